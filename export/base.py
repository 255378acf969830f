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
from pocketbert.export.calibration import calibration_windows
from pocketbert.export.task import TaskModule
from pocketbert.manifest import io_entries
from pocketbert.qa import MAX_SEQ_LEN
from pocketbert.reference import torch_reference, validation_inputs
from pocketbert.rules import JUDGE_WINDOWS, compare_logits, judge, tolerance_for
from pocketbert.tasks import QUESTION_ANSWERING, Task

# The lengths an export takes when none are given: 128 for short questions, and SQuAD's (and MLPerf Mobile's) 384.
DEFAULT_SEQ_LENS = (128, MAX_SEQ_LEN)


@dataclass(frozen=True)
class ExportOptions:
    """How to export: precision, the sequence lengths (fixed or a range), backend, deployment target and
    calibration data; recorded in the manifest as given."""

    precision: str = "fp32"
    seq_lens: tuple[int, ...] = DEFAULT_SEQ_LENS  # fixed lengths: TFLite signatures, Core ML enumerated shapes
    dynamic: bool = False  # a length range [min_seq_len, max_seq_len] instead, where the format supports it
    min_seq_len: int = 8
    max_seq_len: int = 512
    backend: str | None = None
    deployment_target: str | None = None
    calibration: str | None = None  # SQuAD v1.1 file for static quantization; None: generated BBC questions

    def to_dict(self) -> dict:
        """The options as a plain dict, for the manifest's record of how the artifact was exported."""
        return asdict(self)


@dataclass
class Runner:
    """A loaded artifact: call it with {input name: int64 [batch, seq]} and get its task's outputs, a tuple in the
    manifest's output order ((start, end) logits for QA, (logits,) for classification).

    Artifacts exported with batch 1 (mobile QA answers one question at a time) are fed row by row,
    so evaluation code can always pass batches.
    """

    predict: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, ...]]
    input_names: tuple[str, ...]
    batch_one: bool = True
    lengths: tuple[int, ...] | None = None  # fixed lengths only; None: any length within the range
    info: dict = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
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
        return tuple(np.concatenate(outputs) for outputs in zip(*rows))


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
    # How every runner opens this format's artifacts (pocketbert/sessions.py), recorded in each manifest for apps.
    runtime_settings: ClassVar[dict] = {}

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
        """Whether this format's runtime can execute on this machine (see why_not_runnable_here for the reason)."""
        return cls.why_not_runnable_here(backend) is None

    def check_precision(self, precision: str, backend: str | None) -> None:
        """Raise PocketbertError, before any work, where `backend` cannot take `precision` (formats with backends)."""

    def artifact_name(self, options: ExportOptions) -> str:
        """The artifact's path inside its folder ('/'-separated): where this format's platform loaders look."""
        return f"model{self.suffix}"

    def input_names(self, module: TaskModule) -> tuple[str, ...]:
        """The artifact's inputs: the model's own, unless the format's platform loaders need more (TFLite)."""
        return tuple(module.input_names)

    def loader_config(self, options: ExportOptions) -> dict:
        """Entries this format's platform loaders read from the folder's config.json (beside the model's own)."""
        return {}

    @abstractmethod
    def export(self, module: TaskModule, options: ExportOptions, path: Path) -> dict:
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

    def validate(self, path: Path, manifest: dict, module: TaskModule, tokenizer) -> dict:
        """Run the artifact on real tokenised inputs (QA pairs, or texts) and judge it against the unmodified
        transformers model by the rulebook (pocketbert/rules.py): the same rule every device target applies."""
        lengths = validation_lengths(manifest)
        reference = f"transformers {type(module.model).__name__}, unmodified, eager PyTorch fp32"
        try:
            runner = self.load(path, manifest)
        except NotRunnableHere as reason:
            return {"ran": False, "reason": str(reason), "lengths": lengths, "reference": reference, "passed": None}
        precision = manifest["precision"]
        tolerance = tolerance_for(precision)
        per_length = {}
        for length in lengths:
            inputs = validation_inputs(tokenizer, self.input_names(module), length, module.task)
            per_length[length] = compare_logits(runner(inputs), torch_reference(module, inputs), tolerance,
                                                mask=module.output_mask(inputs), names=module.output_keys)
        rows = sum(c["rows"] for c in per_length.values())
        result = {
            "ran": True, "runtime": self.runtime, "runner": runner.info, "reference": reference,
            "compared": ("real-token positions (attention_mask 1) of every row; padded rows and full rows at each length"
                         if module.task.masked else "every label's logit of every row; padded and full rows at each length"),
            "lengths": lengths, "rows": rows,
            "max_abs_diff": max(c["max_abs_diff"] for c in per_length.values()),
            "max_abs_diff_per_length": {str(n): c["max_abs_diff"] for n, c in per_length.items()},
            "tolerance": tolerance,
            "argmax_agreement": {side: sum(c["argmax_agreement"][side] * c["rows"] for c in per_length.values()) / rows
                                 for side in module.output_keys},
        }
        result["passed"] = None if tolerance is None else all(c["passed"] for c in per_length.values())
        if tolerance is None:
            result["confident_answers"] = confident_answer_agreement(runner, module, self.input_names(module),
                                                                     tokenizer, judge_length(manifest), precision)
            result["passed"] = result["confident_answers"]["passed"]
        result["choice"] = module.task.choice
        return result

    def accepted_lengths(self, module: TaskModule, options: ExportOptions) -> dict:
        """The input shapes the artifact file itself accepts, stated for someone feeding it on a phone."""
        if options.dynamic:
            sequence = {"kind": "range", "min": options.min_seq_len, "max": options.max_seq_len}
        elif len(options.seq_lens) == 1:
            sequence = {"kind": "static", "length": options.seq_lens[0]}
        else:
            sequence = {"kind": "enumerated", "lengths": list(options.seq_lens)}
        return {"batch": "dynamic" if self.batch_dynamic else 1, "sequence": sequence,
                "positional_input_order": list(self.input_names(module))}

    def io_spec(self, module: TaskModule, options: ExportOptions) -> tuple[list, list]:
        """Manifest inputs/outputs: names, dtypes, shapes ("batch"/"seq" name the symbolic axes; a classifier's
        outputs run over its labels)."""
        batch = "batch" if self.batch_dynamic else 1
        seq = "seq" if options.dynamic or len(options.seq_lens) > 1 else options.seq_lens[0]
        return io_entries(self.input_names(module), self.input_dtype, batch, seq, module.output_names,
                          module.task.output_axis(seq, module.model.config.num_labels))


def judge_inputs(tokenizer, input_names, length: int, precision: str,
                 task: Task = QUESTION_ANSWERING) -> tuple[dict[str, np.ndarray], dict]:
    """The inputs an artifact of `precision` is judged on at `length`, and where they came from: the validation
    inputs where a logit tolerance decides (fp32), else JUDGE_WINDOWS real inputs (generated dev questions, or dev
    articles for a classifier, that calibration never sees) for the choice rule."""
    if tolerance_for(precision) is not None:
        inputs = validation_inputs(tokenizer, input_names, length, task)
        return inputs, {"windows": len(inputs["attention_mask"]), "length": length,
                        "source": "pocketbert.reference.VALIDATION_EXAMPLES"}
    sample = calibration_windows(tokenizer, input_names, length, questions=JUDGE_WINDOWS, split="dev", task=task)
    return sample.windows, {"windows": sample.facts["windows"], "length": length, "source": sample.facts["source"]}


def confident_answer_agreement(runner: Runner, module: TaskModule, input_names, tokenizer, length: int,
                               precision: str = "int8") -> dict:
    """The rulebook's choice rule on the judge inputs: how often the artifact makes the original model's choice
    (start / end position, or label) where that model is confident."""
    windows, facts = judge_inputs(tokenizer, input_names, length, precision, module.task)
    check = judge(runner(windows), torch_reference(module, windows), precision, module.output_mask(windows),
                  module.output_names, module.task.choice)
    return {**facts, **check["confident_answers"], "rule": check["rule"]}


def judge_length(manifest: dict) -> int:
    """The length the answer rule is judged at: the longest of the lengths the artifact was exported for."""
    return max(manifest["sequence"]["lengths"])


def validation_lengths(manifest: dict) -> list[int]:
    """Fixed lengths as exported; for a range, its ends (16 at least, to hold a question) and the usual lengths."""
    seq = manifest["sequence"]
    if not seq["dynamic"]:
        return list(seq["lengths"])
    return sorted({max(16, seq["min"]), *seq["lengths"], seq["max"]})
