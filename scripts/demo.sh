#!/usr/bin/env bash
# The main job on the bundled example: builds Baton (installing missing Debian packages), makes a
# few sample videos (ffmpeg + flite: slides with readable text, English speech), serves them from
# a local HTTP server on 127.0.0.1, runs examples/video-report.yaml over real HTTP downloads with
# the offline `extractive` summariser, and prints where the reports are.
#
#   ./scripts/demo.sh [--lang zh] [--cluster examples/clusters/three-nodes.yaml] [any other `baton run` flag]
#
# --lang zh: Chinese slides (Simplified Chinese, fonts-wqy-zenhei) served as 季度报告-N.mp4 and
# examples/video-report-zh.yaml (`language: zh-CN`): a report written in Chinese.
set -euo pipefail
cd "$(dirname "$0")/.."
lang=en
if [ "${1:-}" = "--lang" ]; then lang=${2:?--lang needs en or zh}; shift 2; fi
./scripts/build.sh --target baton  # the demo runs only the CLI
OUT=${OUT:-out/demo}
SAMPLES=out/samples
PIPELINE=examples/video-report.yaml
if [ "$lang" = zh ]; then
  OUT=${OUT%/}-zh
  SAMPLES=out/samples-zh
  PIPELINE=examples/video-report-zh.yaml
  mkdir -p "$SAMPLES"
  font=/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
  texts=("季度报告\n收入增长了百分之十二。\n新产品在华东地区销售最好！" "下一步计划\n扩大海外市场，降低成本。\n明年推出三款新产品。")
  for i in 0 1; do
    printf '%b' "${texts[$i]}" > "$SAMPLES/slide$i.txt"
    [ -f "$SAMPLES/sample-$i.mp4" ] || ffmpeg -nostdin -loglevel error -y -f lavfi -i "sine=frequency=440:duration=8" \
      -f lavfi -i "color=c=navy:s=1280x720:r=25:d=8" -filter_complex \
      "[1:v]drawtext=fontfile=$font:textfile=$SAMPLES/slide$i.txt:fontsize=56:line_spacing=20:fontcolor=white:x=(w-tw)/2:y=(h-th)/2[v]" \
      -map "[v]" -map 0:a -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac "$SAMPLES/sample-$i.mp4"
    cp "$SAMPLES/sample-$i.mp4" "$SAMPLES/季度报告-$i.mp4"
  done
else
  scripts/make-samples.sh "$SAMPLES"
fi

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
if [ "$lang" = zh ]; then
  for i in 0 1; do echo "http://127.0.0.1:$port/%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A-$i.mp4" >> "$OUT/inputs.txt"; done
else
  for f in "$SAMPLES"/sample-*.mp4; do echo "http://127.0.0.1:$port/$(basename "$f")" >> "$OUT/inputs.txt"; done
fi
echo "demo: serving $(wc -l < "$OUT/inputs.txt") sample videos on http://127.0.0.1:$port/"

status=0
# --rerun all: the sample server's port (so every input URL) changes from one demo to the next;
# a demo is a fresh run, not a resume of the last one.
build/src/cli/baton run "$PIPELINE" --inputs "$OUT/inputs.txt" --out "$OUT" --rerun all \
  --trace "$OUT/trace.json" "$@" || status=$?

echo
echo "Reports:"
for r in "$OUT"/job-*/report.html; do [ -f "$r" ] && echo "  $r  (and ${r%.html}.md)"; done
echo "Summary: $OUT/summary.json   Trace: $OUT/trace.json (open in https://ui.perfetto.dev)"
exit $status
