#!/usr/bin/env bash
# The README's accuracy table: the demo's student exported at every precision of every format, each scored in its
# own runtime on the demo's dev questions beside PyTorch (Core ML through the reference evaluator, on the first 25
# questions), in the demo's 256-token windows, with the accuracy-against-size plot; then times the statically
# calibrated precisions beside fp32. Run `make demo` first.
# Usage: bash bench/studies/precision_accuracy.sh [STUDENT] [DEV_JSON] [OUT]
#   (defaults runs/demo/student-distilled, runs/demo/data/dev.json, runs/precisions; about 45 minutes on 2 cores)
set -euo pipefail
student=${1:-runs/demo/student-distilled}
dev=${2:-runs/demo/data/dev.json}
out=${3:-runs/precisions}
pb=${POCKETBERT:-.venv/bin/pocketbert}
artifacts=()
export_once() {  # format precision
  local name="$1-$2"
  [ -f "$out/$name/manifest.json" ] || "$pb" export "$student" --format "$1" --precision "$2" --seq-len 256 384 \
    --out "$out/$name"
  artifacts+=("$out/$name")
}
# Every precision of every format, as the export registry lists them (one place: each format's `precisions`).
while read -r format precision; do export_once "$format" "$precision"; done < <("${PYTHON:-.venv/bin/python}" -c '
from pocketbert.export import format_class, format_names
for name in format_names():
    for precision in format_class(name).precisions:
        print(name, precision)')
"$pb" eval "${artifacts[@]}" --data "$dev" --max-seq-len 256 --doc-stride 128 --stand-in-questions 25 \
  --out "$out/eval"
# The calibrated precisions beside fp32 on this CPU: int8 activations, 16-bit activations (model only, 256 tokens).
"$pb" bench "$out/onnx-fp32" "$out/onnx-int8-static" "$out/onnx-a16w8" "$out/tflite-fp32" "$out/tflite-int8-static" \
  "$out/tflite-a16w8" --no-baseline --seq-len 256 --modes model --warmup 2 --runs 10 --out "$out/bench-static"
