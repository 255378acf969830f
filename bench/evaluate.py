"""`pocketbert eval`: SQuAD v1.1 EM/F1 of an artifact in its own runtime, next to its PyTorch source.

Both paths share pocketbert.qa (features, span decoding, metric) and the same window length, so an
fp32 artifact scores what its source model scores; quantisation shows up as the difference.
"""
from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketbert.bench.report import INT8_F1_GOAL, INT8_F1_RULE, render_eval_table, write_report
from pocketbert.bench.results import RESULTS_NAME, load_results, save_results
from pocketbert.bench.runtimes import Target, load_runner, open_target, tokenizer_for
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.fsutil import atomic_write_text, write_json
from pocketbert.manifest import tool_versions
from pocketbert.modeling import PRESETS
from pocketbert.qa import QAWindow, decode_answers, load_squad, prepare_features, squad_scores

EVAL_NAME = "eval.json"
BATCH = 16


def fit_window(target: Target, window: QAWindow) -> QAWindow:
    """`window`, clamped, at its own length if the artifact runs it, else at the artifact's longest length below it."""
    if target.lengths is None:
        return window.clamped(target.max_len)
    fitting = [n for n in target.lengths if n <= window.max_seq_len]
    if not fitting:
        raise PocketbertError(f"'{target.path}' runs lengths {list(target.lengths)} (max {target.max_len}); "
                              f"pass --max-seq-len with one of them")
    return replace(window, max_seq_len=max(fitting)).clamped()


def predict_answers(runner, tokenizer, examples, window: QAWindow, desc: str = "eval") -> dict:
    """{example id: answer} from one runner: features padded to the window length, run in batches, decoded alike."""
    features = prepare_features(tokenizer, examples, window)
    starts, ends = [], []
    for i in tqdm(range(0, len(features["input_ids"]), BATCH), desc=desc, unit="batch"):
        start, end = runner({name: features[name][i:i + BATCH] for name in runner.input_names})
        starts.append(start)
        ends.append(end)
    return decode_answers(examples, features, np.concatenate(starts), np.concatenate(ends))


def score(runner, tokenizer, examples, window: QAWindow, desc: str) -> dict:
    return squad_scores(examples, predict_answers(runner, tokenizer, examples, window, desc))


def reference_checkpoint(target: Target) -> str | None:
    """The PyTorch model an artifact came from, if it is available here (a local folder or a preset)."""
    if target.format == "pytorch":
        return target.path
    checkpoint = (target.manifest.get("source") or {}).get("checkpoint")
    if checkpoint in PRESETS or (checkpoint and (Path(checkpoint) / "config.json").is_file()):
        return checkpoint
    return None


def evaluate(models: list[str], data: str | Path, window: QAWindow = QAWindow(), out: str | Path | None = None) -> dict:
    """Score each model; write eval.json (and fold it into a bench run's report when `out` holds one)."""
    if not models:
        raise PocketbertError("nothing to evaluate; pass artifact folders or checkpoints")
    examples = load_squad(data)
    entries, references = [], {}

    def pytorch_score(checkpoint: str, window: QAWindow, runner=None) -> dict:
        """A checkpoint's PyTorch EM/F1, computed once whether it is a model to score or an artifact's reference."""
        if (checkpoint, window) not in references:
            target = open_target(checkpoint, sizes=False)
            references[checkpoint, window] = score(runner or load_runner(target), tokenizer_for(target), examples,
                                                   window, f"eval {checkpoint} (PyTorch)")
        return references[checkpoint, window]

    for spec in models:
        target = open_target(spec, sizes=False)
        fitted = fit_window(target, window)
        entry = {"model": target.label, "artifact": target.path, "format": target.format, "runtime": target.runtime,
                 "precision": target.precision, "seq_len": fitted.max_seq_len, "doc_stride": fitted.doc_stride,
                 "data": str(data), "random_weights": target.random_weights}
        try:
            runner = load_runner(target)
        except NotRunnableHere as reason:
            entries.append({**entry, "status": "not_measurable", "reason": str(reason), "exact_match": None,
                            "f1": None, "count": len(examples)})
            continue
        if target.format == "pytorch":
            entry.update(pytorch_score(target.path, fitted, runner))
        else:
            entry.update(score(runner, tokenizer_for(target), examples, fitted, f"eval {target.label}"))
            checkpoint = reference_checkpoint(target)
            if checkpoint is not None:
                entry["reference"] = {"checkpoint": checkpoint, **pytorch_score(checkpoint, fitted)}
        entries.append(judge({**entry, "status": "ok", "reason": None}))

    report = {"schema": "pocketbert.eval/1",
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": tool_versions(), "entries": entries}
    if out is not None:
        write_outputs(report, Path(out))
    return report


def judge(entry: dict) -> dict:
    """F1 kept against the PyTorch fp32 source, and the MLPerf Mobile int8 verdict (>= 93%, goal 99%)."""
    ref_f1 = (entry.get("reference") or {}).get("f1")
    entry["f1_retained"] = entry["f1"] / ref_f1 if ref_f1 else None
    if entry["precision"] == "fp32" or entry["f1_retained"] is None:
        entry["verdict"] = "-"
    elif entry["f1_retained"] < INT8_F1_RULE:
        entry["verdict"] = f"FAILS (< {INT8_F1_RULE:.0%} of fp32 F1)"
    elif entry["f1_retained"] < INT8_F1_GOAL:
        entry["verdict"] = f"passes, below the {INT8_F1_GOAL:.0%} goal"
    else:
        entry["verdict"] = "passes"
    return entry


def write_outputs(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / EVAL_NAME, report)
    if (out / RESULTS_NAME).is_file():
        results = load_results(out / RESULTS_NAME)
        measured = {(e["artifact"], e["seq_len"], e["data"]) for e in report["entries"]}
        results["eval"] = [e for e in results.get("eval", []) if (e["artifact"], e["seq_len"], e["data"]) not in measured]
        results["eval"] += report["entries"]
        save_results(out / RESULTS_NAME, results)
        write_report(results, out)
    else:
        atomic_write_text(out / "eval.md", "# pocketbert eval\n\n" + render_eval_table(report["entries"]) + "\n")


def describe(entry: dict) -> str:
    if entry["status"] != "ok":
        return f"{entry['model']}: {entry['status']} ({entry['reason']})"
    line = f"{entry['model']} [{entry['runtime']}/{entry['precision']}, seq {entry['seq_len']}]: " \
           f"EM {entry['exact_match']:.2f} F1 {entry['f1']:.2f} on {entry['count']} questions"
    if entry.get("reference"):
        ref = entry["reference"]
        line += f"; PyTorch EM {ref['exact_match']:.2f} F1 {ref['f1']:.2f}"
        if entry["verdict"] != "-":
            line += f"; int8 rule: {entry['verdict']}"
    return line
