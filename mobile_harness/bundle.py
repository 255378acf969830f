"""A device bundle: one folder that a device can run without pocketbert.

It holds the artifact, its manifest, fixed inputs (.npy, and raw .bin for native runners) from a real
tokenised QA pair, the outputs the artifact gives on the host (or PyTorch's where its runtime cannot run
here), bundle.json (what to run and how often), the standalone device_runner.py and pocketbert's
comparison.py beside it. With --eval it also holds every window of the SQuAD questions, so the device
returns its logits for them and the host scores EM/F1.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketbert import comparison
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.export.base import FP32_TOLERANCE
from pocketbert.export.registry import format_class, load_artifact
from pocketbert.export.task import validation_inputs
from pocketbert.fsutil import write_json
from pocketbert.manifest import MANIFEST_NAME, read_manifest

RUNNER_SCRIPT = Path(__file__).with_name("device_runner.py")
# Travels next to the runner: the device compares outputs with the same function as the host.
COMPARISON_SCRIPT = Path(comparison.__file__)
DEFAULT_SEQ_LEN = 384
EVAL_OUTPUTS = ("eval_start_logits.npy", "eval_end_logits.npy")


@dataclass
class Bundle:
    folder: Path  # local staging folder; its name is also the folder name on the device
    manifest: dict
    config: dict  # bundle.json
    role: str
    source: Path  # the artifact folder it was made from

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def runtime(self) -> str:
        return format_class(self.format).runtime


@dataclass
class EvalSet:
    """SQuAD questions cut into windows on the host: the device only runs the artifact over them."""

    examples: list
    data: str

    def features(self, tokenizer, seq_len: int) -> dict:
        from pocketbert.qa import QAWindow, prepare_features

        return prepare_features(tokenizer, self.examples, QAWindow(max_seq_len=seq_len).clamped())


def choose_seq_len(manifest: dict, requested: int | None) -> int:
    seq = manifest["sequence"]
    allowed = (lambda n: seq["min"] <= n <= seq["max"]) if seq["dynamic"] else (lambda n: n in seq["lengths"])
    if requested is not None:
        if not allowed(requested):
            shown = f"{seq['min']}..{seq['max']}" if seq["dynamic"] else seq["lengths"]
            raise PocketbertError(f"artifact '{manifest['artifact']}' does not run length {requested} (it runs {shown}); "
                                  "pass another --seq-len or re-export")
        return requested
    return DEFAULT_SEQ_LEN if allowed(DEFAULT_SEQ_LEN) else max(seq["lengths"])


def model_name(manifest: dict) -> str:
    source = manifest["source"]
    return source.get("preset") or Path(str(source["checkpoint"]).rstrip("/")).name


def expected_outputs(folder: Path, manifest: dict, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], str]:
    """The artifact's own outputs from its host runtime (for Core ML off macOS: the reference evaluator of its saved
    program, named so), or PyTorch's where nothing runs the artifact here."""
    try:
        runner = load_artifact(folder, manifest)
        label = runner.info.get("runtime") or manifest["format"]
        return [np.asarray(x, np.float32) for x in runner(inputs)], f"{label} on the host"
    except NotRunnableHere:
        from pocketbert.export.task import exportable_qa, torch_reference
        from pocketbert.modeling import load_qa_model

        module = exportable_qa(load_qa_model(manifest["source"]["checkpoint"]).model)
        return [np.asarray(x, np.float32) for x in torch_reference(module, inputs)], "pytorch on the host"


def make_bundle(folder: Path, role: str, staging: Path, index: int, warmup: int, runs: int, threads: int | None,
                seq_len: int | None, eval_set: EvalSet | None = None) -> Bundle:
    from pocketbert.modeling import load_tokenizer

    manifest = read_manifest(folder)
    length = choose_seq_len(manifest, seq_len)
    names = [spec["name"] for spec in manifest["inputs"]]
    tokenizer = load_tokenizer(folder)
    # Row 0 of the real validation pairs: mobile QA answers one question at a time.
    inputs = {name: value[:1] for name, value in validation_inputs(tokenizer, names, length).items()}
    expected, expected_from = expected_outputs(folder, manifest, inputs)

    bundle_dir = staging / f"{index:02d}-{role}-{manifest['format']}-{manifest['precision']}"
    bundle_dir.mkdir(parents=True)
    artifact = folder / manifest["artifact"]
    (shutil.copytree if artifact.is_dir() else shutil.copy2)(artifact, bundle_dir / artifact.name)
    shutil.copy2(folder / MANIFEST_NAME, bundle_dir / MANIFEST_NAME)
    shutil.copy2(RUNNER_SCRIPT, bundle_dir / RUNNER_SCRIPT.name)
    shutil.copy2(COMPARISON_SCRIPT, bundle_dir / COMPARISON_SCRIPT.name)
    input_dtype = next(spec["dtype"] for spec in manifest["inputs"])
    for name, value in inputs.items():
        np.save(bundle_dir / f"input_{name}.npy", value)
        # Native runners read raw little-endian bytes in the artifact's own input dtype.
        value.astype(input_dtype).tofile(bundle_dir / f"input_{name}.bin")
    for name, value in zip(("start_logits", "end_logits"), expected):
        np.save(bundle_dir / f"expected_{name}.npy", value)
    config = {
        "artifact": artifact.name, "format": manifest["format"], "precision": manifest["precision"],
        "seq_len": length, "warmup": warmup, "runs": runs, "threads": threads,
        "inputs": {name: f"input_{name}.npy" for name in names},
        # The order the runner returns outputs in (a TFLite signature gives them as an unordered dict).
        "outputs": [spec["name"] for spec in manifest["outputs"]],
        "raw_inputs": {name: f"input_{name}.bin" for name in names}, "input_dtype": input_dtype,
        "expected": ["expected_start_logits.npy", "expected_end_logits.npy"], "expected_from": expected_from,
        # Reduced precisions are judged on argmax agreement only, as at export time.
        "tolerance": FP32_TOLERANCE if manifest["precision"] == "fp32" else None,
        "eval": None,
    }
    if eval_set is not None:
        features = eval_set.features(tokenizer, length)
        for name in names:
            np.save(bundle_dir / f"eval_{name}.npy", features[name])
        config["eval"] = {"inputs": {name: f"eval_{name}.npy" for name in names}, "outputs": list(EVAL_OUTPUTS)}
    write_json(bundle_dir / "bundle.json", config)
    return Bundle(bundle_dir, manifest, config, role, folder)


def bundle_bytes(bundle: Bundle) -> int:
    return sum(p.stat().st_size for p in bundle.folder.rglob("*") if p.is_file())


def judge(check: dict) -> dict:
    """compare_logits' result with `passed` decided: within tolerance, or (reduced precision) every argmax agrees."""
    if check["tolerance"] is None:
        check = {**check, "passed": all(share == 1.0 for share in check["argmax_agreement"].values())}
    return check


def check_outputs(outputs: list[np.ndarray], bundle: Bundle) -> dict:
    """Device outputs against the expected ones (for runners that write their outputs as files)."""
    expected = [np.load(bundle.folder / file) for file in bundle.config["expected"]]
    shaped = [np.asarray(out).reshape(exp.shape) for out, exp in zip(outputs, expected)]
    return judge(comparison.compare_logits(shaped, expected, bundle.config["tolerance"]))


def outcome(outputs: dict | None) -> dict:
    """status/reason of a measured run from its output check (None: the runner could not write outputs)."""
    if outputs is None or outputs["passed"]:
        return {"status": "ok", "reason": None if outputs else "outputs not checked: this runner does not write them"}
    agreement = ", ".join(f"{k} {v:.0%}" for k, v in outputs["argmax_agreement"].items())
    return {"status": "failed", "reason": f"device outputs differ from the expected ones: max |diff| "
                                          f"{outputs['max_abs_diff']:.2e}, argmax agree {agreement}"}


def not_measurable(bundle: Bundle, where: str, runs: tuple[str, ...]) -> dict:
    return {"status": "not_measurable", "runtime": bundle.runtime,
            "reason": f"{bundle.format} ({bundle.runtime}) has no runner on {where}; it runs {', '.join(runs)}"}
