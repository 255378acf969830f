"""`pocketbert device run`: bundle each artifact, push it to a device, run it there, pull, parse, merge.

Bundles are described in bundle.py; each target kind measures them its own way (targets.py).
Each measured artifact is merged into OUT/results.json at once, so a device lost mid-run loses nothing
already measured. Rows from an emulated board keep their output checks; their timings are marked
emulated (device.emulated) and stay out of every ratio and plot.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketbert.bench.task_eval import (
    EvalRequest,
    TaskEval,
    common_labels,
    models_named,
    one_task,
    run_batched,
    source_checkpoint,
    task_eval,
)
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.export import load_artifact
from pocketbert.fsutil import check_replaceable, gzip_size
from pocketbert.manifest import artifact_verification, read_manifest
from pocketbert.mobile_harness.bundle import Bundle, EvalSet, bundle_bytes, make_bundle, model_name
from pocketbert.mobile_harness.targets import DeviceLost, Target
from pocketbert.modeling import load_tokenizer
from pocketbert.results import (
    RESULTS_NAME,
    baseline_ratios,
    load_results,
    make_record,
    merge_results,
    new_results,
    save_results,
    timing_is_real,
)
from pocketbert.rules import compare_logits, output_key, tolerance_for
from pocketbert.tasks import QUESTION_ANSWERING

SPACE_MARGIN = 1.2  # room for the runner's own outputs and the file system's rounding


def to_record(bundle: Bundle, measured: dict, device: dict, threads: int | None) -> dict:
    """A results.json record from what the target measured, the device it ran on and the artifact's manifest."""
    manifest = bundle.manifest
    artifact = bundle.source / manifest["artifact"]
    return make_record(
        model=model_name(manifest), role=bundle.role, artifact=str(bundle.source), task=bundle.config["task"],
        format=manifest["format"],
        runtime=measured.get("runtime") or bundle.runtime, backend=manifest.get("backend"),
        precision=manifest["precision"], seq_len=bundle.config["seq_len"], mode="model", threads=threads,
        device={**device, **(measured.get("device_facts") or {}), "target": device["target"]},
        random_weights=bool(manifest["source"].get("random_weights")), parameters=manifest.get("parameters"),
        file_bytes=manifest.get("file_bytes"), gzip_bytes=gzip_size(artifact),
        peak_rss_bytes=measured.get("peak_rss_bytes"), load_ms=measured.get("load_ms"),
        first_ms=measured.get("first_ms"), latency_ms=measured.get("latency_ms"),
        status=measured["status"], reason=measured.get("reason"), runtime_settings=measured.get("runtime_settings"),
    )


def merge_into(out: Path, settings: dict, records: list[dict], evals: list[dict]) -> Path:
    """Join device rows (and eval entries) into OUT/results.json (created if absent), written atomically."""
    extra = {**new_results(settings, records), "eval": evals}
    path = out / RESULTS_NAME
    merged = merge_results(load_results(path), extra) if path.exists() else extra
    return save_results(path, merged)


def run_on_device(target: Target, artifacts: list[str | Path], out: str | Path, baseline: str | Path | None = None,
                  warmup: int | None = None, runs: int | None = None, threads: int | None = None,
                  seq_len: int | None = None, runners: dict[str, Path] | None = None,
                  eval_data: str | Path | None = None, max_questions: int | None = None,
                  verify: bool = True) -> list[dict]:
    """Measure each artifact (and the baseline) on `target`; returns the records merged into OUT/results.json.

    `verify=False` (--no-verify): push artifacts whose file no longer matches their manifest's sha256.

    With `eval_data` (the artifacts' task's dev data, as `pocketbert eval --data` takes it: SQuAD v1.1 JSON, or
    labelled text for classifiers) each artifact also runs the first `max_questions` examples on the device; the
    host scores what it returns by the task's evaluation (bench/task_eval.py: EM/F1, accuracy/macro-F1) beside the
    same artifact on this host and its PyTorch fp32 source, into results.json's "eval" entries.
    `warmup` / `runs` unset: 10 and 50, or 0 and 1 on an emulated target with `eval_data` (see timing_runs).
    The target is closed however the run ends: the host target's temp folder goes also after bad input.
    """
    try:
        warmup, runs = timing_runs(target, eval_data, warmup, runs)
        if runs < 1 or warmup < 0:
            raise PocketbertError("--runs must be at least 1 and --warmup at least 0")
        if not artifacts:
            raise PocketbertError("pass at least one artifact folder (from `pocketbert export`)")
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise PocketbertError(f"--out '{out}' is a file; pass a folder (results.json goes inside it)")
        check_replaceable(out, force=False, update=True)  # rows join a folder pocketbert wrote, never a user's own
        items = [(Path(a), "candidate") for a in artifacts] + ([(Path(baseline), "baseline")] if baseline else [])
        with artifact_verification(verify):
            for folder, _ in items:
                read_manifest(folder)  # every folder (and its file's sha256) is checked before the device is touched
            eval_set = load_eval_set(eval_data, max_questions, [folder for folder, _ in items]) \
                if eval_data is not None else None
            return _run(target, items, out, warmup, runs, threads, seq_len, runners or {}, eval_set)
    finally:
        target.close()


DEFAULT_WARMUP, DEFAULT_RUNS = 10, 50


def timing_runs(target: Target, eval_data, warmup: int | None, runs: int | None) -> tuple[int, int]:
    """(warm-up, timed runs): what the caller asked for, else 10 and 50; but on an emulated target with --eval,
    whose timings are discarded as no latency, 0 and 1 unless asked for: the run is there for its outputs."""
    skip = eval_data is not None and bool(getattr(target, "emulated", False))
    return (warmup if warmup is not None else 0 if skip else DEFAULT_WARMUP,
            runs if runs is not None else 1 if skip else DEFAULT_RUNS)


def load_eval_set(data: str | Path, max_questions: int | None, artifacts: list[Path] | None = None) -> EvalSet:
    """The first `max_questions` examples of `data` for --eval, read and checked as `pocketbert eval` reads the
    artifacts' task's dev data (SQuAD v1.1 when no artifacts are named): one line for a question without a gold
    answer, a label the artifacts do not predict, data of another task, or artifacts of two tasks or label sets."""
    if max_questions is not None and max_questions < 1:
        raise PocketbertError("--max-questions must be at least 1")
    if artifacts:
        from pocketbert.bench.runtimes import open_target  # lazy: only --eval reads the artifacts' task and labels

        targets = [open_target(folder, sizes=False) for folder in artifacts]
        evaluation, labels, named = one_task(targets), common_labels(targets), models_named(targets)
    else:
        evaluation, labels, named = task_eval(QUESTION_ANSWERING), None, "the artifacts"
    return EvalSet(evaluation.load(data, EvalRequest(), labels, named, limit=max_questions), str(data), evaluation)


def _run(target: Target, items: list[tuple[Path, str]], out: Path, warmup: int, runs: int, threads: int | None,
         seq_len: int | None, runners: dict[str, Path], eval_set: EvalSet | None) -> list[dict]:
    target.check()
    device = {"target": target.spec, **target.info(), "threads": threads}
    settings = {"target": target.spec, "warmup": warmup, "runs": runs, "threads": threads, "output_checks": {}}
    done: list[dict] = []
    references: dict[tuple, dict] = {}  # (source checkpoint, length) -> its PyTorch scores, once per run
    with tempfile.TemporaryDirectory(prefix="pocketbert-bundles-") as staging:
        progress = tqdm(items, desc=f"device {target.spec}", unit="artifact")
        for index, (folder, role) in enumerate(progress):
            progress.set_postfix_str(folder.name)
            bundle = make_bundle(folder, role, Path(staging), index, warmup, runs, threads, seq_len, eval_set)
            try:
                check_space(target, bundle)
                measured = target.measure(bundle, runners)
                target.remove(target.path(bundle.name))
            except DeviceLost as lost:
                missing = [str(f) for f, _ in items[index:]]
                saved = f"{out / RESULTS_NAME} keeps the {len(done)} measured before" if done else "nothing was measured"
                raise DeviceLost(f"{lost}; {saved}; missing: {', '.join(missing)} — rerun those") from None
            record = to_record(bundle, measured, device, threads)
            settings["output_checks"][f"{role}:{folder}"] = {**(measured.get("outputs") or {}),
                                                             "expected_from": bundle.config["expected_from"]}
            evals = [score_on_device(bundle, eval_set, record, references)] if eval_set is not None else []
            merge_into(out, settings, [record], evals)
            done.append(record)
        progress.close()
    plot_device_results(out, target.spec)
    return done


def score_on_device(bundle: Bundle, eval_set: EvalSet, record: dict, references: dict | None = None) -> dict:
    """The task's metrics (EM/F1, accuracy/macro-F1) from the outputs the device returned for every eval input, beside
    the same artifact's on this host and its PyTorch fp32 source's, whose share of the headline metric the rulebook
    judges as `pocketbert eval` does. `references` caches the source's scores across bundles of one run."""
    evaluation, examples = eval_set.evaluation, eval_set.examples
    features = eval_set.features(load_tokenizer(bundle.source), bundle.config["seq_len"])
    entry = {"model": record["model"], "task": evaluation.task.name, "artifact": record["artifact"],
             "format": record["format"], "runtime": record["runtime"], "precision": record["precision"],
             "seq_len": record["seq_len"], "data": eval_set.data, "random_weights": record["random_weights"],
             "device": record["device"], "count": evaluation.count(examples), **evaluation.empty_scores(),
             "host": None, "logits_vs_host": None, "reference": None, evaluation.retained_key: None, "verdict": "-"}
    outputs = [bundle.folder / name for name in (bundle.config["eval"] or {}).get("outputs", [])]
    if record["status"] != "ok" or not outputs or not all(path.is_file() for path in outputs):
        return {**entry, "status": "not_measurable",
                "reason": record["reason"] or f"{record['device']['target']} returned no outputs for the eval inputs"}
    device_outputs = [np.load(path) for path in outputs]
    entry.update(evaluation.score(examples, evaluation.decode(examples, features, device_outputs)))
    try:
        runner = load_artifact(bundle.source, bundle.manifest)
        host_outputs = run_batched(runner, features, f"eval {record['model']} {record['format']} on this host")
        entry["host"] = evaluation.summary(evaluation.score(examples, evaluation.decode(examples, features, host_outputs)))
        # Where the scores differ, this says whether the kernels differ a little (near ties) or a lot.
        entry["logits_vs_host"] = compare_logits(device_outputs, host_outputs, tolerance_for(record["precision"]),
                                                 names=[output_key(name) for name in bundle.config["outputs"]])
    except NotRunnableHere as reason:
        entry["host"] = {"reason": str(reason)}
    checkpoint = source_checkpoint(bundle.manifest)
    if checkpoint is not None:
        key = (checkpoint, record["seq_len"])
        cache = references if references is not None else {}
        if key not in cache:
            cache[key] = source_scores(evaluation, checkpoint, examples, features)
        entry["reference"] = {"checkpoint": checkpoint, **cache[key]}
    return evaluation.judge({**entry, "status": "ok", "reason": None})


def source_scores(evaluation: TaskEval, checkpoint: str, examples, features: dict) -> dict:
    """The metrics of the model an artifact came from (eager PyTorch fp32 on this host) on the same eval inputs."""
    from pocketbert.bench.runtimes import pytorch_runner  # lazy: only --eval with the source at hand loads it

    outputs = run_batched(pytorch_runner(checkpoint), features, f"eval {checkpoint} (PyTorch)")
    return evaluation.summary(evaluation.score(examples, evaluation.decode(examples, features, outputs)))


def check_space(target: Target, bundle: Bundle) -> None:
    """Refuse in one line, before pushing, a bundle that would not fit where the target keeps bundles."""
    free, needed = target.free_space(), int(bundle_bytes(bundle) * SPACE_MARGIN)
    if free is not None and free < needed:
        raise PocketbertError(f"{target.spec} has {free / 1e6:.0f} MB free in {target.workdir} but the "
                              f"{bundle.manifest['format']} bundle needs {needed / 1e6:.0f} MB; free space or pass --workdir")


def plot_device_results(out: Path, target: str) -> Path | None:
    """device_latency_TARGET.png: mean latency per model and runtime on this target, baseline ratios in the labels."""
    import matplotlib  # lazy: heavy, and only a run that measured real timings draws a plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg"), so no display is needed

    records = [r for r in load_results(out)["records"] if (r["device"] or {}).get("target") == target
               and r["status"] == "ok" and r["latency_ms"] and timing_is_real(r)]
    if not records:
        return None
    speedups = {(c["candidate"], c["runtime"], c["precision"]): c["speedup"] for c in baseline_ratios(records)}
    labels, values = [], []
    for r in records:
        ratio = speedups.get((r["model"], r["runtime"], r["precision"]))
        labels.append(f"{r['model']} ({r['role']})\n{r['runtime']}/{r['precision']}/L{r['seq_len']}"
                      + (f"\n{ratio:.2f}x vs baseline" if ratio else ""))
        values.append(r["latency_ms"]["mean"])
    figure, axis = plt.subplots(figsize=(max(5, 1.8 * len(values)), 4))
    axis.bar(range(len(values)), values, color=["#999999" if r["role"] == "baseline" else "#3b7dd8" for r in records])
    axis.set_xticks(range(len(values)), labels, fontsize=7)
    axis.set_ylabel("mean latency (ms)")
    model = (records[0]["device"] or {}).get("model") or target
    axis.set_title(f"{target} — {model}", fontsize=9)
    figure.tight_layout()
    path = out / f"device_latency_{re.sub(r'[^A-Za-z0-9._-]+', '_', target)}.png"
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)
    return path
