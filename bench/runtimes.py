"""One way to open anything bench measures: an exported artifact folder or a checkpoint (PyTorch eager).

A `Target` holds what is known without running (format, precision, size, shape of the encoder); `load_runner`
returns the export stage's `Runner` for it, so artifacts and eager PyTorch are called identically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.export import COREML_EVALUATOR_RUNTIME as EVALUATOR_RUNTIME
from pocketbert.export import Runner, exportable, format_class, load_artifact
from pocketbert.fsutil import gzip_size
from pocketbert.manifest import MANIFEST_NAME, manifest_task, read_manifest
from pocketbert.modeling import (
    PRESETS,
    check_tokenizer_fits,
    count_parameters,
    embedded_teacher_dir,
    encoder_shape,
    load_config,
    load_model,
    load_tokenizer,
    preset_config,
)
from pocketbert.results import EAGER_FORMAT, EAGER_RUNTIME
from pocketbert.tasks import DEFAULT_TASK, TASKS, Task, label_names, task_of_config

EAGER_RUNTIME_MODULE = "torch"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class Target:
    """One model to measure (artifact, checkpoint or preset) with the facts bench records about it."""

    label: str
    role: str  # "candidate" | "baseline"
    path: str  # artifact folder, checkpoint folder or preset name
    format: str
    precision: str
    backend: str | None
    lengths: tuple[int, ...] | None  # fixed lengths; None: any length up to max_len
    max_len: int
    parameters: int | None
    random_weights: bool
    file_bytes: int | None
    gzip_bytes: int | None
    encoder: dict | None  # {"layers", "hidden", "intermediate"} for FLOP counts
    manifest: dict | None = None
    extra: dict = field(default_factory=dict)
    task_name: str = DEFAULT_TASK.name  # what the model is for (pocketbert/tasks.py): its outputs, inputs, head
    labels: list[str] | None = None  # a classifier's label names in logit order (None for QA)

    @property
    def task(self) -> Task:
        """The target's task (pocketbert/tasks.py)."""
        return TASKS[self.task_name]

    @property
    def head(self) -> str:
        """The task and, for a classifier, its label count, in words: what a baseline must share with a candidate."""
        return self.task_name + (f" with {len(self.labels)} labels" if self.labels is not None else "")

    @property
    def runtime(self) -> str:
        """The runtime that executes this target (PyTorch eager, or its export format's runtime)."""
        return EAGER_RUNTIME if self.format == EAGER_FORMAT else format_class(self.format).runtime

    @property
    def runtime_module(self) -> str:
        """The Python module that runs this target (its format's fact, read from the export registry)."""
        return EAGER_RUNTIME_MODULE if self.format == EAGER_FORMAT else format_class(self.format).runtime_module

    def supports(self, length: int) -> bool:
        """Whether the target takes inputs of `length` tokens (within its maximum, and one of its fixed lengths if any)."""
        return length <= self.max_len and (self.lengths is None or length in self.lengths)

    def record_fields(self) -> dict:
        """The fields of a results record that describe the target itself (model, format, runtime, precision,
        sizes); the caller adds the settings and the measurement."""
        return {"model": self.label, "role": self.role, "artifact": self.path, "task": self.task_name, "format": self.format,
                "runtime": self.runtime, "backend": self.backend, "precision": self.precision,
                "random_weights": self.random_weights, "parameters": self.parameters,
                "file_bytes": self.file_bytes, "gzip_bytes": self.gzip_bytes}


def open_target(spec: str | Path, role: str = "candidate", label: str | None = None, sizes: bool = True) -> Target:
    """An artifact folder (has manifest.json), a checkpoint folder, or a preset name.

    `sizes=False` skips the gzip pass (seconds for a 400 MB file) where only running matters.
    """
    spec = str(spec)
    path = Path(spec)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        return _artifact_target(path, role, label, sizes)
    if spec in PRESETS:  # a preset candidate is timed with the default (question-answering) head, as load_model makes it
        config = preset_config(spec)
        return Target(label or f"{spec} (random weights)", role, spec, EAGER_FORMAT, "fp32", None, None,
                      config.max_position_embeddings, None, True, None, None, encoder_shape(config))
    if not path.is_dir():
        raise PocketbertError(f"'{spec}' is neither an artifact folder nor a checkpoint folder; pass the output of "
                              f"`pocketbert export` or a Hugging Face checkpoint directory")
    if not (path / "config.json").is_file():
        raise PocketbertError(f"'{spec}' has no manifest.json and no config.json; pass an artifact or checkpoint folder")
    config = load_config(spec)  # a corrupt or mistyped config.json is one line, before anything runs
    check_tokenizer_fits(load_tokenizer(spec), config, spec)  # and so is a missing, degenerate or oversized tokenizer
    weights = [p for p in sorted(path.iterdir()) if p.suffix in WEIGHT_SUFFIXES]
    task = task_of_config(config) or DEFAULT_TASK  # a bare encoder loads with the default head, as load_model does
    return Target(label or path.name, role, spec, EAGER_FORMAT, "fp32", None, None, config.max_position_embeddings,
                  None, False, sum(p.stat().st_size for p in weights) or None,
                  (sum(gzip_size(p) for p in weights) or None) if sizes else None, encoder_shape(config),
                  task_name=task.name, labels=label_names(config) if not task.masked else None)


def open_targets(specs, sizes: bool = True) -> list[Target]:
    """`open_target` for each; labels key measurements and output folders, so two folders named alike get #N."""
    targets = [open_target(spec, sizes=sizes) for spec in specs]
    for i, t in enumerate(targets):
        if any(o.label == t.label for o in targets[:i]):
            t.label = f"{t.label} #{i + 1}"
    return targets


def _artifact_target(folder: Path, role: str, label: str | None, sizes: bool) -> Target:
    manifest = read_manifest(folder)
    format_class(manifest["format"])  # an unknown runtime fails here, in one line, before any measuring
    artifact = folder / manifest["artifact"]
    seq = manifest["sequence"]
    lengths, max_len = None if seq["dynamic"] else tuple(seq["lengths"]), seq["max"]
    accepted = manifest.get("accepted_lengths", {}).get("sequence", {})
    if accepted.get("kind") == "range":  # the file takes every length up to its end, not only those exported at
        lengths, max_len = None, accepted["max"]
    source = manifest.get("source", {})
    task = manifest_task(manifest)
    labels = None if task.masked else list(manifest.get("labels") or
                                           [f"LABEL_{i}" for i in range(manifest["outputs"][0]["shape"][-1])])
    return Target(
        label or f"{folder.name}", role, str(folder), manifest["format"], manifest["precision"],
        manifest.get("backend"), lengths, max_len,
        manifest.get("parameters"), bool(source.get("random_weights")), manifest["file_bytes"],
        gzip_size(artifact) if sizes else None,
        source.get("encoder"), manifest, task_name=task.name, labels=labels,
    )


def encoder_flops(encoder: dict | None, seq_len: int) -> int | None:
    """Encoder FLOPs for one sequence: per layer 8nd² (Q,K,V,O) + 4ndi (FFN) + 4n²d (scores, weighted sum).

    With the standard i = 4d this is the usual 24nd² + 4n²d; embeddings and the task head are negligible.
    """
    if not encoder:
        return None
    n, d, i = seq_len, encoder["hidden"], encoder["intermediate"]
    return encoder["layers"] * (8 * n * d * d + 4 * n * d * i + 4 * n * n * d)


def tokenizer_for(target: Target):
    """The tokenizer that feeds the target: its own folder's, or the embedded teacher's for a preset (which has none)."""
    if target.path in PRESETS:
        return load_tokenizer(embedded_teacher_dir())
    return load_tokenizer(target.path)


def load_runner(target: Target, threads: int | None = None):
    """The target in its own runtime, as an export `Runner`. Raises NotRunnableHere where it cannot run."""
    if target.format == EAGER_FORMAT:
        return pytorch_runner(target.path, threads)
    return load_artifact(target.path, target.manifest, threads)


def stand_in(runner) -> str | None:
    """What runs the artifact when it is not its own runtime (Core ML's numpy reference evaluator off macOS)."""
    return EVALUATOR_RUNTIME if runner.info.get("runtime") == EVALUATOR_RUNTIME else None


def load_timed_runner(target: Target, threads: int | None = None):
    """`load_runner` for latency: NotRunnableHere where only a stand-in runs the artifact, whose outputs are right
    but whose speed says nothing about the runtime."""
    runner = load_runner(target, threads)
    if stand_in(runner):
        assert target.manifest is not None  # only an artifact has a stand-in runtime
        check = target.manifest.get("validation") or {}
        agreement = ", ".join(f"{key} {share:.0%}" for key, share in (check.get("argmax_agreement") or {}).items())
        numbers = (f"; its check against the original model: max |diff| {check['max_abs_diff']:.1e}, argmax agreement "
                   f"{agreement}" if check.get("ran") else "")
        raise NotRunnableHere(f"{target.runtime} cannot run here ({runner.info.get('why') or 'not this platform'}); "
                              f"the {stand_in(runner)} checks outputs only, its timings are not {target.runtime}'s"
                              f"{numbers}")
    return runner


def pytorch_runner(checkpoint: str, threads: int | None = None):
    """The checkpoint in PyTorch eager with the head of its task, wrapped like the exports (TaskModule, inference
    mode) as a Runner returning the task's outputs in order: the reference every artifact is compared with."""
    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(checkpoint)
    module = exportable(loaded.model)

    def predict(feed: dict[str, np.ndarray]):
        with torch.inference_mode():
            outputs = module(*(torch.from_numpy(feed[name]) for name in module.input_names))
        return tuple(output.numpy() for output in outputs)

    return Runner(predict, tuple(module.input_names), batch_one=False,
                  info={"parameters": count_parameters(loaded.model), "threads": torch.get_num_threads()})
