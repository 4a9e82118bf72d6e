#!/usr/bin/env bash
# Installs the Debian 12 packages Baton needs to build, run and test. Idempotent: installs only
# what is missing, so it costs nothing on a machine that already has everything.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config python3
  libcurl4-openssl-dev libssl-dev
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev ffmpeg
  libtesseract-dev tesseract-ocr-eng
  # Chinese (pipeline `language: zh-CN` / `zh-TW`): OCR data, vertical-text models, CJK fonts for
  # test slides and the demo (fonts-wqy-zenhei is small; fonts-noto-cjk is large).
  tesseract-ocr-chi-sim tesseract-ocr-chi-sim-vert tesseract-ocr-chi-tra tesseract-ocr-chi-tra-vert
  fonts-wqy-zenhei fonts-wqy-microhei fonts-arphic-uming
  libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us
  libhiredis-dev redis-server
  nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  flite fonts-dejavu-core curl
  libcmark-gfm-dev libcmark-gfm-extensions-dev  # the report's Markdown (CommonMark + GitHub tables)
  libsystemd-dev  # sd_notify readiness for `baton head` / `baton node`
  python3-jsonschema  # tests: every JSON output validated against docs/schema/baton.schema.json
  prometheus systemd  # tests: `promtool check metrics` on /metrics, `systemd-analyze verify` on docs/systemd/
  shellcheck  # CI: every shell script passes it (scripts/test.sh)
  faketime  # tests: wall-clock jumps under the cluster (libfaketime)
  slurmctld slurmd slurm-client munge  # tests: scripts/slurm/ run by a real one-machine Slurm
  clang libclang-rt-14-dev  # CI: sanitizer builds, -Wthread-safety and libFuzzer (scripts/sanitize.sh)
  chromium  # dashboard browser test (tests/browser); node and npm come from elsewhere here
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
