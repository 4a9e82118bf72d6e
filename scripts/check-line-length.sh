#!/usr/bin/env bash
# Fails when a line of C++ (*.h, *.cc under src/ include/ tests/ bench/ fuzz/) is over 120
# columns (.clang-format's ColumnLimit; a column is a character, UTF-8), printing FILE:LINE for
# each. Skips nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
long=$(LC_ALL=C.UTF-8 grep -rnE --include='*.h' --include='*.cc' '^.{121,}' src include tests bench fuzz |
  cut -d: -f1,2 || true)
if [[ -n $long ]]; then
  echo "$long"
  echo "check-line-length: $(wc -l <<<"$long") line(s) over 120 columns (wrap them; .clang-format)" >&2
  exit 1
fi
