#!/usr/bin/env bash
# The README's real-size table: the DistilBERT architecture exported to every runnable format vs the
# BERT-base baseline, at the paper's length 384, on this machine's CPU. Cost only: both are the
# random-weight presets (same shapes and ops as the real models; accuracy is the demo's job).
# Usage: bash bench/studies/paper_comparison.sh [OUT]   (default runs/paper; about 45 minutes on 2 cores)
set -euo pipefail
out=${1:-runs/paper}
pb=${POCKETBERT:-.venv/bin/pocketbert}
export_once() {  # name, then pocketbert export arguments
  local name=$1; shift
  [ -f "$out/$name/manifest.json" ] || "$pb" export distilbert-base "$@" --out "$out/$name"
}
export_once executorch-fp32 --format executorch --dynamic
export_once executorch-int8 --format executorch --precision int8 --seq-len 64 512
export_once tflite-fp32 --format tflite --seq-len 384
export_once tflite-int8 --format tflite --precision int8 --seq-len 384
export_once onnx-fp32 --format onnx
export_once onnx-int8 --format onnx --precision int8
export_once executorch-int4 --format executorch --precision int4 --seq-len 64 512
export_once onnx-int8-static --format onnx --precision int8-static --seq-len 384
export_once onnx-int4 --format onnx --precision int4
export_once tflite-int8-static --format tflite --precision int8-static --seq-len 384
export_once tflite-int4 --format tflite --precision int4 --seq-len 384
"$pb" bench "$out"/executorch-fp32 "$out"/executorch-int8 "$out"/executorch-int4 "$out"/tflite-fp32 "$out"/tflite-int8 \
  "$out"/tflite-int8-static "$out"/tflite-int4 "$out"/onnx-fp32 "$out"/onnx-int8 "$out"/onnx-int8-static \
  "$out"/onnx-int4 distilbert-base \
  --baseline bert-base --no-export-baseline --seq-len 384 --sweep 64 128 256 384 512 --out "$out/bench"
# DistilBERT against BERT-base in the same runtime: BERT-base exported like each fp32 artifact (cached in the output's
# baseline-cache/ after the first run).
"$pb" bench "$out"/executorch-fp32 "$out"/tflite-fp32 "$out"/onnx-fp32 distilbert-base \
  --baseline bert-base --seq-len 384 --modes model --out "$out/bench-fp32-per-runtime"
# Where each runtime's time goes at 384 tokens, per op type (LiteRT has no profiler to read: a row says so).
"$pb" bench op-profile "$out"/onnx-fp32 "$out"/onnx-int8 "$out"/executorch-fp32 "$out"/executorch-int8 \
  "$out"/tflite-int8 distilbert-base --seq-len 384 --threads 2 --out "$out/op-profile"
# How fast each runtime's own fp32 and int8 kernels multiply matrices on this CPU (feed-forward layers alone).
"$pb" bench gemm --out "$out/gemm"
