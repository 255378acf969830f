"""Open an artifact in its own runtime with the settings its manifest records: the one place every runner (export
validation, bench, eval, op-profile, peers, and the device runner on host, ssh, boards and phones via the bundle)
applies them, so a row from any of them ran the same way.

A manifest's "runtime_settings" is part of the artifact's contract: what an app must set to run the artifact as it
was validated and timed. No pocketbert imports, and each runtime is imported only when it is opened: this file
travels to boards beside the device runner and runs there as it is.
"""
from __future__ import annotations

from pathlib import Path

# Manifest keys that explain the settings to a person; no runtime reads them.
NOTE_KEYS = ("why", "how")


def settings_of(manifest: dict) -> dict:
    """The runtime settings a manifest records ({} where the format sets none). Manifests written before the
    settings had their own entry kept ONNX Runtime's under graph.session."""
    if "runtime_settings" in manifest:
        return manifest["runtime_settings"] or {}
    return (manifest.get("graph") or {}).get("session") or {}


def applied(settings: dict, threads: int | None) -> dict:
    """What a results row records of the settings it ran with."""
    return {**{k: v for k, v in settings.items() if k not in NOTE_KEYS}, "threads": threads}


def onnx_session(path: str | Path, settings: dict, threads: int | None = None, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session with the manifest's session config entries and disabled optimizers; with
    `profile_prefix`, ONNX Runtime's profiler writes its trace there."""
    import onnxruntime  # lazy: each runtime loads only when opened, so a board with one runtime runs this file

    options = onnxruntime.SessionOptions()
    for key, value in (settings.get("config_entries") or {}).items():
        options.add_session_config_entry(key, str(value))
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=list(settings.get("disabled_optimizers") or []))


def tflite_interpreter(path: str | Path, settings: dict, threads: int | None = None):
    """A LiteRT interpreter (ai-edge-litert, or the smaller tflite-runtime wheel some boards ship) and its version
    label. LiteRT applies XNNPACK by default; the manifest records no other setting."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # lazy: a board may have only tflite-runtime, or no LiteRT

        label = "ai-edge-litert"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter  # lazy: the boards' smaller LiteRT wheel, tried second

        label = "tflite-runtime"
    return Interpreter(model_path=str(path), num_threads=threads), label
