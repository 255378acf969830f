"""export/: checkpoint -> validated mobile artifact folders (`pocketbert.export`).

The public face the other stages (bench, eval, the device harness) use; nothing outside export/ imports its
private names. Attributes load on first use, so `import pocketbert.export` stays cheap.

- export_model, describe, support_table: export a checkpoint and say what came out (api.py).
- load_artifact, format_class, format_names, get_format: open an artifact folder in its own runtime, and each
  format's facts (registry.py, formats/).
- judge_inputs, validation_lengths, DEFAULT_SEQ_LENS, ExportOptions, Runner: what an artifact is judged on and
  how it is run (base.py); the rule itself is pocketbert/rules.py.
- exportable: the graph every format converts (task.py).
- calibration_windows: real QA windows for calibration (calibration.py).
- ONNX_OPSET, onnx_cpu_session, quantize_*_onnx, executorch_*, quantize_weights_executorch, tflite_*,
  COREML_EVALUATOR_RUNTIME, load_coreml_program: each format's quantization and runtime set-up as its exporter applies
  them, for the studies that probe them (formats/, coreml_mil/).
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "export_model": "api", "describe": "api", "support_table": "api",
    "load_artifact": "registry", "format_class": "registry", "format_names": "registry", "get_format": "registry",
    "judge_inputs": "base", "validation_lengths": "base", "DEFAULT_SEQ_LENS": "base", "ExportOptions": "base",
    "Runner": "base",
    "exportable": "task",
    "calibration_windows": "calibration",
}
# Each format's quantization and runtime set-up, as its exporter applies them, for the studies that probe them
# (bench/studies/): named here with the format in front, so no study reaches into a format module.
_RENAMED = {
    "ONNX_OPSET": ("formats.onnx", "OPSET"),
    "onnx_cpu_session": ("formats.onnx", "cpu_session"),
    "quantize_dynamic_int8_onnx": ("formats.onnx", "quantize_dynamic_int8"),
    "quantize_static_int8_onnx": ("formats.onnx", "quantize_static_int8"),
    "executorch_set_threads": ("formats.executorch", "set_threads"),
    "executorch_xnnpack_partitioner": ("formats.executorch", "xnnpack_partitioner"),
    "quantize_weights_executorch": ("formats.executorch_quant", "quantize_weights"),
    "tflite_quantization_recipe": ("formats.tflite", "quantization_recipe"),
    "tflite_signature_name": ("formats.tflite", "signature_name"),
    "COREML_EVALUATOR_RUNTIME": ("coreml_mil", "EVALUATOR_RUNTIME"),
    "load_coreml_program": ("coreml_mil", "load_program"),
}

__all__ = sorted([*_PUBLIC, *_RENAMED])


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name], name
    elif name in _RENAMED:
        module, attribute = _RENAMED[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
