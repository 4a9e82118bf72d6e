#!/usr/bin/env bash
# The main job on the bundled example: builds Baton (installing missing Debian packages), makes a
# few sample videos (ffmpeg + flite: slides with readable text, English speech), serves them from
# a local HTTP server on 127.0.0.1, runs examples/video-report.yaml over real HTTP downloads with
# the offline `extractive` summariser, and prints where the reports are.
#
#   ./scripts/demo.sh [--cluster examples/clusters/three-nodes.yaml] [any other `baton run` flag]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
OUT=${OUT:-out/demo}
SAMPLES=out/samples
scripts/make-samples.sh "$SAMPLES"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$SAMPLES" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done

mkdir -p "$OUT"
: > "$OUT/inputs.txt"
for f in "$SAMPLES"/sample-*.mp4; do echo "http://127.0.0.1:$port/$(basename "$f")" >> "$OUT/inputs.txt"; done
echo "demo: serving $(wc -l < "$OUT/inputs.txt") sample videos on http://127.0.0.1:$port/"

status=0
build/src/cli/baton run examples/video-report.yaml --inputs "$OUT/inputs.txt" --out "$OUT" \
  --trace "$OUT/trace.json" "$@" || status=$?

echo
echo "Reports:"
for r in "$OUT"/job-*/report.html; do [ -f "$r" ] && echo "  $r  (and ${r%.html}.md)"; done
echo "Summary: $OUT/summary.json   Trace: $OUT/trace.json (open in https://ui.perfetto.dev)"
exit $status
