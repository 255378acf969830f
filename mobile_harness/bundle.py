"""A device bundle: one folder that a device can run without pocketbert.

It holds the artifact, its manifest, the timed input (.npy, and raw .bin for native runners: row 0 of the task's
validation inputs, a question/context window or a text, as `pocketbert bench` times), the judge inputs the rulebook
(pocketbert/rules.py) decides on, the outputs of the model the artifact came from on both, bundle.json (what to run,
how often, with which runtime settings; the task, its output names in order and how they are judged, so every
runner and the host read them from there), the standalone device_runner.py and pocketbert's sessions.py beside it.
With --eval it also holds every input of the dev data (QA windows or texts, cut as `pocketbert eval` cuts them).
The device returns its outputs; the host judges them by the same rule as export validation.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketbert import rules, sessions
from pocketbert.bench.task_eval import TaskEval, task_eval
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.export import exportable, format_class, judge_inputs, load_artifact
from pocketbert.fsutil import write_json
from pocketbert.manifest import MANIFEST_NAME, manifest_task, output_names, read_manifest
from pocketbert.modeling import load_model, load_tokenizer
from pocketbert.qa import MAX_SEQ_LEN
from pocketbert.reference import torch_reference, validation_inputs
from pocketbert.tasks import QUESTION_ANSWERING

RUNNER_SCRIPT = Path(__file__).with_name("device_runner.py")
# Travels next to the runner: the device opens the artifact with the same settings as every host runner.
SESSIONS_SCRIPT = Path(sessions.__file__)


def output_files(prefix: str, names) -> list[str]:
    """The files a device writes its outputs into, one per output name in order: judge_logits.npy,
    device_start_logits.npy, ..."""
    return [f"{prefix}{name}.npy" for name in names]


@dataclass
class Bundle:
    """One staged bundle folder, with the manifest and bundle.json it was made with."""

    folder: Path  # local staging folder; its name is also the folder name on the device
    manifest: dict
    config: dict  # bundle.json
    role: str
    source: Path  # the artifact folder it was made from

    @property
    def name(self) -> str:
        """The folder's name: also its folder name on the device."""
        return self.folder.name

    @property
    def format(self) -> str:
        """The artifact's export format (onnx, tflite, executorch, coreml)."""
        return self.manifest["format"]

    @property
    def runtime(self) -> str:
        """The runtime the export registry names for that format."""
        return format_class(self.format).runtime


@dataclass
class EvalSet:
    """--eval's dev data, read and checked on the host by its task's evaluation (bench/task_eval.py, as `pocketbert
    eval` reads it): SQuAD questions or labelled texts. The host cuts the inputs; the device only runs the artifact
    over them, and the host scores what it returns."""

    examples: Any  # the task's dev data (TaskEval.load): QA examples, or a classifier's LabelledSet
    data: str  # the file it came from
    evaluation: TaskEval = field(default_factory=lambda: task_eval(QUESTION_ANSWERING))

    def features(self, tokenizer, seq_len: int) -> dict:
        """The inputs at `seq_len` (QA windows, or texts cut there), as `pocketbert eval` cuts them."""
        return self.evaluation.inputs(tokenizer, self.examples, self.evaluation.at_length(seq_len))


def choose_seq_len(manifest: dict, requested: int | None) -> int:
    """The length the device runs: `requested` if the artifact takes it (else refused), by default 384 or the
    artifact's longest fixed length."""
    seq = manifest["sequence"]
    allowed = (lambda n: seq["min"] <= n <= seq["max"]) if seq["dynamic"] else (lambda n: n in seq["lengths"])
    if requested is not None:
        if not allowed(requested):
            shown = f"{seq['min']}..{seq['max']}" if seq["dynamic"] else seq["lengths"]
            raise PocketbertError(f"artifact '{manifest['artifact']}' does not run length {requested} (it runs {shown}); "
                                  "pass another --seq-len or re-export")
        return requested
    return MAX_SEQ_LEN if allowed(MAX_SEQ_LEN) else max(seq["lengths"])


def model_name(manifest: dict) -> str:
    """The row's model name: the preset, else the checkpoint folder's name."""
    source = manifest["source"]
    return source.get("preset") or Path(str(source["checkpoint"]).rstrip("/")).name


def reference_outputs(folder: Path, manifest: dict, feeds: list[dict[str, np.ndarray]]) -> tuple[list[list], str]:
    """The outputs of the model the artifact came from (the unmodified transformers model, eager PyTorch fp32) on
    each feed: what the rulebook judges against, at export time and on every target. Where that checkpoint is gone,
    the artifact's own outputs in its host runtime stand in, and the bundle says so."""
    task = manifest_task(manifest)
    try:
        loaded = load_model(manifest["source"]["checkpoint"], task=task, labels=manifest.get("labels"))
        module = exportable(loaded.model)
    except PocketbertError as gone:
        try:
            runner = load_artifact(folder, manifest)
        except NotRunnableHere as reason:
            raise PocketbertError(f"cannot judge '{folder}' on a device: its source model is unavailable ({gone}) and "
                                  f"its runtime cannot run here ({reason}); keep the checkpoint beside it") from None
        label = runner.info.get("runtime") or manifest["format"]
        return [[np.asarray(x, np.float32) for x in runner(feed)] for feed in feeds], \
            f"{label} on the host (the source model {manifest['source']['checkpoint']} is unavailable)"
    return [[np.asarray(x, np.float32) for x in torch_reference(module, feed)] for feed in feeds], \
        "the source model: transformers, unmodified, eager PyTorch fp32 on the host"


def save_inputs(bundle_dir: Path, prefix: str, inputs: dict[str, np.ndarray], dtype: str) -> tuple[dict, dict]:
    """.npy for Python runners and raw little-endian .bin in the artifact's own input dtype for native ones."""
    npy, raw = {}, {}
    for name, value in inputs.items():
        npy[name], raw[name] = f"{prefix}{name}.npy", f"{prefix}{name}.bin"
        np.save(bundle_dir / npy[name], value)
        value.astype(dtype).tofile(bundle_dir / raw[name])
    return npy, raw


def save_outputs(bundle_dir: Path, prefix: str, outputs, names) -> list[str]:
    """Save reference outputs as PREFIX<output name>.npy, in the manifest's output order; returns the file names."""
    files = [f"{prefix}{name}.npy" for name in names]
    for file, value in zip(files, outputs):
        np.save(bundle_dir / file, value)
    return files


def make_bundle(folder: Path, role: str, staging: Path, index: int, warmup: int, runs: int, threads: int | None,
                seq_len: int | None, eval_set: EvalSet | None = None) -> Bundle:
    """Stage the bundle of one artifact folder under `staging` (see the module docstring for what it holds)."""
    manifest = read_manifest(folder)
    length = choose_seq_len(manifest, seq_len)
    names = [spec["name"] for spec in manifest["inputs"]]
    precision = manifest["precision"]
    task = manifest_task(manifest)
    outputs = output_names(manifest)
    tokenizer = load_tokenizer(folder)
    # Timed: row 0 of the task's real validation inputs, as `pocketbert bench` times (an app runs one at a time).
    feed = {name: value[:1] for name, value in validation_inputs(tokenizer, names, length, task).items()}
    # Judged: the inputs the rulebook decides this precision on, at the length the device runs.
    windows, windows_from = judge_inputs(tokenizer, names, length, precision, task)
    (feed_reference, judge_reference), reference_from = reference_outputs(folder, manifest, [feed, windows])

    bundle_dir = staging / f"{index:02d}-{role}-{manifest['format']}-{precision}"
    bundle_dir.mkdir(parents=True)
    artifact = folder / manifest["artifact"]
    (shutil.copytree if artifact.is_dir() else shutil.copy2)(artifact, bundle_dir / artifact.name)
    shutil.copy2(folder / MANIFEST_NAME, bundle_dir / MANIFEST_NAME)
    shutil.copy2(RUNNER_SCRIPT, bundle_dir / RUNNER_SCRIPT.name)
    shutil.copy2(SESSIONS_SCRIPT, bundle_dir / SESSIONS_SCRIPT.name)
    input_dtype = next(spec["dtype"] for spec in manifest["inputs"])
    inputs, raw_inputs = save_inputs(bundle_dir, "input_", feed, input_dtype)
    judge_npy, judge_raw = save_inputs(bundle_dir, "judge_input_", windows, input_dtype)
    config = {
        "artifact": artifact.name, "format": manifest["format"], "precision": precision,
        "seq_len": length, "warmup": warmup, "runs": runs, "threads": threads,
        # Applied on the device by sessions.py, as every host runner applies them.
        "runtime_settings": sessions.settings_of(manifest),
        "inputs": inputs, "raw_inputs": raw_inputs, "input_dtype": input_dtype,
        # The task and its outputs: the names and order every runner returns them in (a TFLite signature gives them
        # as an unordered dict), and how the host judges them (rules.judge: the attention mask where outputs run over
        # positions, none over labels; what an argmax picks).
        "task": task.name, "outputs": outputs, "masked": task.masked, "choice": task.choice,
        # Where a runner that returns the timed input's outputs (the browser) writes them, one file per output.
        "device_outputs": output_files("device_", outputs),
        "rule": rules.rule_for(precision, task.choice), "expected_from": reference_from,
        # The source model's outputs on the timed input, for runners that return only those (native phone tools).
        "expected": save_outputs(bundle_dir, "expected_", feed_reference, outputs),
        "judge": {"inputs": judge_npy, "raw_inputs": judge_raw, "rows": len(windows["attention_mask"]),
                  "outputs": output_files("judge_", outputs), "source": windows_from,
                  "reference": save_outputs(bundle_dir, "judge_reference_", judge_reference, outputs)},
        "eval": None,
    }
    if eval_set is not None:
        features = eval_set.features(tokenizer, length)
        for name in names:
            np.save(bundle_dir / f"eval_{name}.npy", features[name])
        # One file per output name, in the manifest's order, as for the judge inputs.
        config["eval"] = {"task": eval_set.evaluation.task.name, "inputs": {name: f"eval_{name}.npy" for name in names},
                          "rows": len(features[names[0]]), "outputs": output_files("eval_", outputs)}
    write_json(bundle_dir / "bundle.json", config)
    return Bundle(bundle_dir, manifest, config, role, folder)


def bundle_bytes(bundle: Bundle) -> int:
    """The bundle's size on disk, to check the device's free space before pushing."""
    return sum(p.stat().st_size for p in bundle.folder.rglob("*") if p.is_file())


def judge_logits(bundle: Bundle, outputs, which: str = "judge") -> dict:
    """The rulebook's verdict on the outputs a device returned (in bundle.json's output order): for the judge inputs
    (`which` "judge") or, from runners that return only those, for the timed input ("expected"). The task's facts
    come from bundle.json: its output names, what an argmax picks, and whether padding is masked out."""
    config = bundle.config
    entry = config["judge"] if which == "judge" else config
    reference = [np.load(bundle.folder / file) for file in entry["reference" if which == "judge" else "expected"]]
    mask = np.load(bundle.folder / entry["inputs"]["attention_mask"]) if config["masked"] else None
    try:
        if len(outputs) != len(reference):
            raise ValueError(f"{len(outputs)} outputs, expected {len(reference)} ({', '.join(config['outputs'])})")
        shaped = [np.asarray(out, np.float32).reshape(ref.shape) for out, ref in zip(outputs, reference)]
        check = rules.judge(shaped, reference, config["precision"], mask, config["outputs"], config["choice"])
    except ValueError as err:  # a runner that returned other outputs than the artifact's: the row fails and says so
        check = {"passed": False, "rule": config["rule"], "problem": f"the device returned other outputs ({err})"}
    return {**check, "judged_on": which, "expected_from": config["expected_from"]}


def check_outputs(outputs: list[np.ndarray], bundle: Bundle) -> dict:
    """The verdict on the timed input's outputs (for native runners that write only those as files)."""
    return judge_logits(bundle, outputs, which="expected")


def check_judge_outputs(bundle: Bundle) -> dict | None:
    """The verdict on the judge inputs' outputs the device wrote into the bundle folder, one file per output name
    (None: it wrote none)."""
    files = [bundle.folder / name for name in bundle.config["judge"]["outputs"]]
    if not all(path.is_file() for path in files):
        return None
    return judge_logits(bundle, [np.load(path) for path in files])


def outcome(outputs: dict | None) -> dict:
    """status/reason of a measured run from its output verdict (None: the runner could not write outputs)."""
    if outputs is None:
        return {"status": "ok", "reason": "outputs not checked: this runner does not write them"}
    reason = outputs.get("problem") or rules.verdict_reason(outputs)
    if outputs["passed"] is False:
        return {"status": "failed", "reason": f"device outputs fail the rule: {reason}"}
    return {"status": "ok", "reason": reason}


def not_measurable(bundle: Bundle, where: str, runs: tuple[str, ...]) -> dict:
    """The row for a bundle whose runtime has no runner on this target, saying what the target runs."""
    return {"status": "not_measurable", "runtime": bundle.runtime,
            "reason": f"{bundle.format} ({bundle.runtime}) has no runner on {where}; it runs {', '.join(runs)}"}
