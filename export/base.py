"""What every export format provides: export, load (to run), validate. One subclass per file in formats/."""
from __future__ import annotations

import importlib.util
import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.comparison import compare_logits
from pocketbert.export.task import OUTPUT_NAMES, QAModule, torch_reference, validation_inputs

FP32_TOLERANCE = 1e-4
# Below fp32 no logit tolerance decides, so a quantized artifact is checked by its answers instead: on real QA windows
# (generated questions the calibration never sees), where the original model is confident (its best start or end
# logit beats the runner-up by CONFIDENT_MARGIN), the artifact must pick the same position in at least
# MIN_CONFIDENT_AGREEMENT of them. Random-weight test models are almost never confident, so this catches broken
# quantization of trained models (a full-int8 ONNX graph that agreed on 0% of them) without flagging test models.
REAL_WINDOWS = 8
CONFIDENT_MARGIN = 1.0
MIN_CONFIDENT_AGREEMENT = 0.5
MIN_CONFIDENT_ROWS = 4  # fewer confident positions than this: no verdict


@dataclass(frozen=True)
class ExportOptions:
    precision: str = "fp32"
    seq_lens: tuple[int, ...] = (128, 384)  # fixed lengths: TFLite signatures, Core ML enumerated shapes
    dynamic: bool = False  # a length range [min_seq_len, max_seq_len] instead, where the format supports it
    min_seq_len: int = 8
    max_seq_len: int = 512
    backend: str | None = None
    deployment_target: str | None = None
    calibration: str | None = None  # SQuAD v1.1 file for static quantization; None: generated BBC questions

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Runner:
    """A loaded artifact: call it with {input name: int64 [batch, seq]} and get (start, end) logits.

    Artifacts exported with batch 1 (mobile QA answers one question at a time) are fed row by row,
    so evaluation code can always pass batches.
    """

    predict: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]
    input_names: tuple[str, ...]
    batch_one: bool = True
    lengths: tuple[int, ...] | None = None  # fixed lengths only; None: any length within the range
    info: dict = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise PocketbertError(f"inputs {missing} are missing; the artifact takes {list(self.input_names)}")
        seq = inputs[self.input_names[0]].shape[1]
        if self.lengths is not None and seq not in self.lengths:
            raise PocketbertError(f"this artifact runs lengths {list(self.lengths)}, not {seq}; pad to one of them")
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.int64) for name in self.input_names}
        if not self.batch_one:
            return self.predict(feed)
        rows = [self.predict({k: v[i:i + 1] for k, v in feed.items()}) for i in range(len(feed[self.input_names[0]]))]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])


class Exporter(ABC):
    """One export format. Its ClassVars are the format's facts; bench and the device harness read them here."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # artifact file name suffix, e.g. ".onnx"
    precisions: ClassVar[tuple[str, ...]]
    runtime: ClassVar[str]  # the runtime that executes the artifact: "onnxruntime", "litert", "executorch", "coreml"
    runtime_module: ClassVar[str]  # the Python module that runs it, e.g. "ai_edge_litert.interpreter"
    runtime_package: ClassVar[str]  # the pip package that provides runtime_module
    runtime_platforms: ClassVar[tuple[str, ...] | None] = None  # sys.platform values it predicts on; None: any
    backends: ClassVar[tuple[str, ...]] = ()  # first one is the default; empty: no --backend choice
    calibrated_precisions: ClassVar[tuple[str, ...]] = ()  # precisions whose activation ranges come from calibration
    input_dtype: ClassVar[str] = "int64"  # what the artifact's integer inputs are inside the runtime
    batch_dynamic: ClassVar[bool] = False
    supports_dynamic_length: ClassVar[bool] = True

    @classmethod
    def why_not_runnable_here(cls, backend: str | None = None) -> str | None:
        """None when this machine can run the format's artifacts in their own runtime, else the reason."""
        if cls.runtime_platforms is not None and sys.platform not in cls.runtime_platforms:
            return f"{cls.runtime} runs on {', '.join(cls.runtime_platforms)} only (this is {sys.platform})"
        try:
            found = importlib.util.find_spec(cls.runtime_module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        return None if found else f"the runtime package '{cls.runtime_package}' is not installed"

    @classmethod
    def runs_here(cls, backend: str | None = None) -> bool:
        return cls.why_not_runnable_here(backend) is None

    def check_precision(self, precision: str, backend: str | None) -> None:
        """Raise PocketbertError, before any work, where `backend` cannot take `precision` (formats with backends)."""

    def artifact_name(self, options: ExportOptions) -> str:
        """The artifact's path inside its folder ('/'-separated): where this format's platform loaders look."""
        return f"model{self.suffix}"

    def input_names(self, module: QAModule) -> tuple[str, ...]:
        """The artifact's inputs: the model's own, unless the format's platform loaders need more (TFLite)."""
        return tuple(module.input_names)

    def loader_config(self, options: ExportOptions) -> dict:
        """Entries this format's platform loaders read from the folder's config.json (beside the model's own)."""
        return {}

    @abstractmethod
    def export(self, module: QAModule, options: ExportOptions, path: Path) -> dict:
        """Write the artifact at `path`; return format facts for the manifest's "graph" entry."""

    @abstractmethod
    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        """Load the artifact in its own runtime. Raise NotRunnableHere where that runtime cannot run."""

    def profile_ops(self, path: Path, manifest: dict, feed: dict[str, np.ndarray], warmup: int, runs: int,
                    threads: int | None = None) -> dict:
        """Milliseconds per call by op type from the runtime's own profiler, over `runs` calls of `feed` after
        `warmup`: {"ops": {op type: ms}, "wall_ms": ms per call as the profiler saw it, "profiler": what measured}.
        Raise NotRunnableHere where the runtime has no profiler pocketbert can read."""
        raise NotRunnableHere(f"{self.runtime} has no per-op profiler that pocketbert reads")

    def validate(self, path: Path, manifest: dict, module: QAModule, tokenizer) -> dict:
        """Run the artifact on real tokenised QA pairs and compare it with the unmodified transformers model."""
        lengths = validation_lengths(manifest)
        reference = f"transformers {type(module.model).__name__}, unmodified, eager PyTorch fp32"
        try:
            runner = self.load(path, manifest)
        except NotRunnableHere as reason:
            return {"ran": False, "reason": str(reason), "lengths": lengths, "reference": reference, "passed": None}
        tolerance = FP32_TOLERANCE if manifest["precision"] == "fp32" else None
        per_length = {}
        for length in lengths:
            inputs = validation_inputs(tokenizer, self.input_names(module), length)
            per_length[length] = compare_logits(runner(inputs), torch_reference(module, inputs), tolerance,
                                                mask=inputs["attention_mask"])
        rows = sum(c["rows"] for c in per_length.values())
        result = {
            "ran": True, "runtime": self.runtime, "runner": runner.info, "reference": reference,
            "compared": "real-token positions (attention_mask 1) of every row; padded rows and full rows at each length",
            "lengths": lengths, "rows": rows,
            "max_abs_diff": max(c["max_abs_diff"] for c in per_length.values()),
            "max_abs_diff_per_length": {str(n): c["max_abs_diff"] for n, c in per_length.items()},
            "tolerance": tolerance,
            "argmax_agreement": {side: sum(c["argmax_agreement"][side] * c["rows"] for c in per_length.values()) / rows
                                 for side in ("start", "end")},
        }
        result["passed"] = None if tolerance is None else all(c["passed"] for c in per_length.values())
        if tolerance is None:
            result["confident_answers"] = confident_answer_agreement(runner, module, self.input_names(module),
                                                                     tokenizer, max(manifest["sequence"]["lengths"]))
            result["passed"] = result["confident_answers"]["passed"]
        return result

    def accepted_lengths(self, module: QAModule, options: ExportOptions) -> dict:
        """The input shapes the artifact file itself accepts, stated for someone feeding it on a phone."""
        if options.dynamic:
            sequence = {"kind": "range", "min": options.min_seq_len, "max": options.max_seq_len}
        elif len(options.seq_lens) == 1:
            sequence = {"kind": "static", "length": options.seq_lens[0]}
        else:
            sequence = {"kind": "enumerated", "lengths": list(options.seq_lens)}
        return {"batch": "dynamic" if self.batch_dynamic else 1, "sequence": sequence,
                "positional_input_order": list(self.input_names(module))}

    def io_spec(self, module: QAModule, options: ExportOptions) -> tuple[list, list]:
        """Manifest inputs/outputs: names, dtypes, shapes ("batch"/"seq" name the symbolic axes)."""
        batch = "batch" if self.batch_dynamic else 1
        seq = "seq" if options.dynamic or len(options.seq_lens) > 1 else options.seq_lens[0]
        inputs = [{"name": n, "dtype": self.input_dtype, "shape": [batch, seq]} for n in self.input_names(module)]
        outputs = [{"name": n, "dtype": "float32", "shape": [batch, seq]} for n in OUTPUT_NAMES]
        return inputs, outputs


def confident_answer_agreement(runner: Runner, module: QAModule, input_names, tokenizer, length: int) -> dict:
    """How often the artifact picks the original model's start / end position where that model is confident."""
    from pocketbert.export.calibration import calibration_windows

    sample = calibration_windows(tokenizer, input_names, length, questions=REAL_WINDOWS, split="dev")
    windows = sample.windows
    real = windows["attention_mask"] == 1
    agreeing = confident = 0
    for got, expected in zip(runner(windows), torch_reference(module, windows)):
        expected = np.where(real, expected, -np.inf)
        top_two = np.sort(expected, axis=-1)[:, -2:]
        sure = top_two[:, 1] - top_two[:, 0] >= CONFIDENT_MARGIN
        confident += int(sure.sum())
        agreeing += int((np.where(real, got, -np.inf).argmax(-1) == expected.argmax(-1))[sure].sum())
    agreement = agreeing / confident if confident else None
    verdict = None if confident < MIN_CONFIDENT_ROWS else agreement >= MIN_CONFIDENT_AGREEMENT
    return {"windows": sample.facts["windows"], "length": length, "source": sample.facts["source"],
            "confident_margin": CONFIDENT_MARGIN, "confident_positions": confident, "agreement": agreement,
            "min_agreement": MIN_CONFIDENT_AGREEMENT, "passed": verdict}


def validation_lengths(manifest: dict) -> list[int]:
    """Fixed lengths as exported; for a range, its ends (16 at least, to hold a question) and the usual lengths."""
    seq = manifest["sequence"]
    if not seq["dynamic"]:
        return list(seq["lengths"])
    return sorted({max(16, seq["min"]), *seq["lengths"], seq["max"]})
