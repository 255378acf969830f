"""The Core ML model inside an ExecuTorch .pte lowered to the Core ML delegate, evaluated like an .mlpackage.

What the payload is (executorch 1.5.1, backends/apple/coreml/compiler/coreml_preprocess.py): the delegate's
processed bytes are a directory flattened by `executorchcoreml.flatten_directory_contents`, holding
`lowered_module/model.mlpackage` (the ML Program coremltools converted, uncompiled unless the compile spec
asked for a compiled .mlmodelc) plus `lowered_module/metadata.json` (input/output names). The same package unflattens with the
binding's `unflatten_directory_contents`, so the reference evaluator runs it exactly as it runs our own
Core ML exports. That stands for the .pte's numbers only when the delegate is the whole program (one
segment, nothing left on the portable CPU kernels), which the manifest's graph facts say.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from pocketbert.errors import NotRunnableHere, PocketbertError, require_module
from pocketbert.export.coreml_mil.evaluator import EVALUATOR_RUNTIME, MILProgram, load_program

COREML_BACKEND_ID = "CoreMLBackend"
PACKAGE_NAME = "model.mlpackage"
COMPILED_NAME = "model.mlmodelc"
PAYLOAD_ROOT = "lowered_module"  # the directory coreml_preprocess flattens, kept as the payload's top level


def delegate_payloads(pte: Path) -> list[bytes]:
    """The processed bytes of every Core ML delegate in the .pte, in execution-plan order."""
    serialize = require_module("executorch.exir._serialize._program", "executorch")
    pte_file = serialize.deserialize_pte_binary(Path(pte).read_bytes())  # segments moved back inline
    program = pte_file.program
    payloads = []
    for plan in program.execution_plan:
        for delegate in plan.delegates:
            if delegate.id == COREML_BACKEND_ID:
                payloads.append(bytes(program.backend_delegate_data[delegate.processed.index].data))
    return payloads


def extract_core_ml_package(pte: Path, folder: Path) -> tuple[Path, dict]:
    """Unflatten the .pte's single Core ML delegate into `folder`; (the .mlpackage path, its metadata.json)."""
    payloads = delegate_payloads(pte)
    if len(payloads) != 1:
        raise NotRunnableHere(f"'{pte}' holds {len(payloads)} Core ML delegate payloads; the reference evaluator "
                              "stands for the program only when one delegate is all of it")
    binding = require_module("executorch.backends.apple.coreml.executorchcoreml", "executorch")
    folder.mkdir(parents=True, exist_ok=True)
    if not binding.unflatten_directory_contents(payloads[0], str(folder)):
        raise PocketbertError(f"the Core ML delegate payload of '{pte}' did not unflatten into a directory; the .pte "
                              "is damaged or comes from another ExecuTorch version — re-export it")
    root = folder / PAYLOAD_ROOT
    if (root / COMPILED_NAME).exists():
        raise NotRunnableHere(f"the Core ML delegate in '{pte}' is a compiled .mlmodelc (compile spec model_type "
                              "compiled_model): its program is in Apple's compiled format, which only Core ML reads; "
                              "export with the default model_type to evaluate it here")
    package = root / PACKAGE_NAME
    if not package.is_dir():
        found = sorted(str(p.relative_to(folder)) for p in folder.glob("*/*"))
        raise PocketbertError(f"the Core ML delegate payload of '{pte}' has no {PACKAGE_NAME} (it holds {found})")
    metadata_file = root / "metadata.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    return package, metadata


def whole_program_delegated(manifest: dict) -> str | None:
    """None when the manifest's graph facts say the Core ML delegate is the whole program, else why not."""
    graph = manifest.get("graph", {})
    segments, outside = graph.get("delegate_segments"), graph.get("non_delegated_ops")
    if segments == 1 and outside == 0:
        return None
    return (f"the .pte has {segments} Core ML delegate segment(s) and {outside} op(s) on the portable CPU kernels; "
            "evaluating the delegate alone would not give the program's outputs")


def load_delegate_program(pte: Path, manifest: dict) -> tuple[MILProgram, dict]:
    """(the delegate's ML Program ready to run, facts for Runner.info). Raises NotRunnableHere with the reason
    when the delegate cannot stand for the .pte."""
    reason = whole_program_delegated(manifest)
    if reason:
        raise NotRunnableHere(reason)
    with tempfile.TemporaryDirectory(prefix="pocketbert-pte-coreml-") as scratch:
        package, metadata = extract_core_ml_package(Path(pte), Path(scratch) / "delegate")
        program = load_program(package)  # constants are read into memory: the folder may go
        program.path = Path(pte)
    info = {"runtime": EVALUATOR_RUNTIME,
            "why": "the Core ML delegate runs only in ExecuTorch builds for iOS/macOS; its payload is an ML Program "
                   "(model.mlpackage), evaluated instead",
            "delegate": {"backend": COREML_BACKEND_ID, "payload": PACKAGE_NAME,
                         "identifier": metadata.get("identifier")},
            **program.describe()}
    return program, info


def delegate_predictor(pte: Path, manifest: dict):
    """(predict, info) for a Runner. The delegate's inputs keep the program's names but not its order (the
    Core ML model lists them as the edge graph first uses them), so they are fed by name; its outputs come
    in the program's output order (start, end)."""
    program, info = load_delegate_program(pte, manifest)
    names = [spec["name"] for spec in manifest["inputs"]]
    if sorted(program.inputs) != sorted(names):
        raise PocketbertError(f"the Core ML delegate of '{pte}' takes inputs {sorted(program.inputs)}, the manifest "
                              f"lists {names}; report this export as a bug")

    def predict(feed: dict[str, np.ndarray]):
        out = program({name: feed[name] for name in program.inputs})
        return tuple(np.asarray(out[name], dtype=np.float32) for name in program.outputs)

    return predict, info


__all__ = ["delegate_payloads", "extract_core_ml_package", "load_delegate_program", "delegate_predictor"]
