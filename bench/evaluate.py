"""`pocketbert eval`: SQuAD v1.1 EM/F1 of an artifact in its own runtime, next to its PyTorch source.

Both paths share pocketbert.qa (features, span decoding, metric) and the same window length, so an
fp32 artifact scores what its source model scores; quantisation shows up as the difference.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketbert.bench.report import INT8_F1_GOAL, INT8_F1_RULE, _save, render_eval_table, write_report
from pocketbert.bench.runtimes import Target, load_runner, open_target, open_targets, stand_in, tokenizer_for
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.fsutil import atomic_write_text, make_dirs, read_json, write_json
from pocketbert.manifest import tool_versions
from pocketbert.modeling import PRESETS
from pocketbert.qa import (QAWindow, best_answers, decode_nbest, load_squad, prepare_features, question_scores,
                           require_gold_answers, squad_scores)
from pocketbert.results import EAGER_FORMAT, RESULTS_NAME, load_results, save_results

EVAL_NAME = "eval.json"
ACCURACY_SIZE_PLOT = "accuracy_size.png"
PREDICTIONS_DIR = "predictions"
PREDICTIONS_NAME = "predictions.json"
QUESTION_SCORES_NAME = "question_scores.json"
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


def predict_nbest(runner, tokenizer, examples, window: QAWindow, desc: str = "eval") -> dict[str, list[dict]]:
    """{example id: candidate answers, best first} from one runner: features padded to the window length, run in
    batches, decoded alike for every runtime."""
    features = prepare_features(tokenizer, examples, window)
    starts, ends = [], []
    for i in tqdm(range(0, len(features["input_ids"]), BATCH), desc=desc, unit="batch"):
        start, end = runner({name: features[name][i:i + BATCH] for name in runner.input_names})
        starts.append(start)
        ends.append(end)
    return decode_nbest(examples, features, np.concatenate(starts), np.concatenate(ends))


def write_predictions(out: Path, label: str, examples, nbest: dict) -> str:
    """One model's files in the SQuAD ecosystem's shapes, under out/predictions/LABEL/: predictions.json ({question
    id: answer text}, what the official v1.1 evaluate script reads), nbest_predictions.json, and
    question_scores.json (EM/F1 per question, to inspect errors). Returns the folder, relative to `out`."""
    folder = Path(PREDICTIONS_DIR) / (re.sub(r"[^\w.-]+", "-", label).strip("-") or "model")
    predictions = best_answers(nbest)
    write_json(out / folder / PREDICTIONS_NAME, predictions)
    write_json(out / folder / "nbest_predictions.json", nbest)
    write_json(out / folder / QUESTION_SCORES_NAME, question_scores(examples, predictions))
    return str(folder)


def reference_checkpoint(target: Target) -> str | None:
    """The PyTorch model an artifact came from, if it is available here (a local folder or a preset)."""
    if target.format == EAGER_FORMAT:
        return target.path
    checkpoint = (target.manifest.get("source") or {}).get("checkpoint")
    if checkpoint in PRESETS or (checkpoint and (Path(checkpoint) / "config.json").is_file()):
        return checkpoint
    return None


def evaluate(models: list[str], data: str | Path, window: QAWindow = QAWindow(), out: str | Path | None = None,
             stand_in_questions: int | None = None) -> dict:
    """Score each model; write eval.json and each model's predictions (and fold the scores into a bench run's
    report when `out` holds one).

    `stand_in_questions`: an artifact run by a stand-in for its runtime (the Core ML reference evaluator, about
    2 s a window for a 3-layer student) is scored on the first N questions only, and so is its PyTorch reference,
    so its F1 kept still compares the same questions.
    """
    if stand_in_questions is not None and stand_in_questions < 1:
        raise PocketbertError(f"--stand-in-questions must be at least 1, not {stand_in_questions}")
    if not models:
        raise PocketbertError("nothing to evaluate; pass artifact folders or checkpoints, or --predictions FILE")
    examples = require_gold_answers(load_squad(data), data)
    if out is not None:
        make_dirs(out)  # a folder that cannot be written fails now, not after every model has run
    entries, checkpoint_predictions = [], {}

    def checkpoint_nbest(checkpoint: str, window: QAWindow, runner=None) -> dict:
        """A checkpoint's PyTorch answers, computed once whether it is a model to score or an artifact's reference."""
        if (checkpoint, window) not in checkpoint_predictions:
            target = open_target(checkpoint, sizes=False)
            checkpoint_predictions[checkpoint, window] = predict_nbest(
                runner or load_runner(target), tokenizer_for(target), examples, window, f"eval {checkpoint} (PyTorch)")
        return checkpoint_predictions[checkpoint, window]

    for target in open_targets(models, sizes=False):
        fitted = fit_window(target, window)
        entry = {"model": target.label, "artifact": target.path, "format": target.format, "runtime": target.runtime,
                 "precision": target.precision, "seq_len": fitted.max_seq_len, "doc_stride": fitted.doc_stride,
                 "data": str(data), "random_weights": target.random_weights, "file_bytes": target.file_bytes}
        try:
            runner = load_runner(target)
        except NotRunnableHere as reason:
            entries.append({**entry, "status": "not_measurable", "reason": str(reason), "exact_match": None,
                            "f1": None, "count": len(examples)})
            continue
        entry["runtime"] = stand_in(runner) or target.runtime
        scored = examples[:stand_in_questions] if stand_in(runner) else examples
        if target.format == EAGER_FORMAT:
            nbest = checkpoint_nbest(target.path, fitted, runner)
        else:
            nbest = predict_nbest(runner, tokenizer_for(target), scored, fitted, f"eval {target.label}")
            checkpoint = reference_checkpoint(target)
            if checkpoint is not None:
                reference = best_answers(checkpoint_nbest(checkpoint, fitted))
                entry["reference"] = {"checkpoint": checkpoint, **squad_scores(scored, reference)}
        entry.update(squad_scores(scored, best_answers(nbest)))
        if out is not None:
            entry["predictions"] = write_predictions(Path(out), target.label, scored, nbest)
        entries.append(judge({**entry, "status": "ok", "reason": None}))

    report = {"schema": "pocketbert.eval/1",
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": tool_versions(), "entries": entries}
    if out is not None:
        write_outputs(report, Path(out))
    return report


def rescore(predictions_path: str | Path, data: str | Path, out: str | Path | None = None) -> dict:
    """EM/F1 of a saved predictions file ({question id: answer text}) on a SQuAD v1.1 file, with no model: what the
    official v1.1 evaluate script prints for the same two files. `out` gets question_scores.json and rescore.json."""
    examples = require_gold_answers(load_squad(data), data)
    predictions = read_json(predictions_path, "predictions file")
    if not isinstance(predictions, dict) or not all(isinstance(answer, str) for answer in predictions.values()):
        raise PocketbertError(f"'{predictions_path}' is not a SQuAD predictions file ({{question id: answer text}}); "
                              f"pass a {PREDICTIONS_NAME} written by `pocketbert eval --out`")
    known = {ex.id for ex in examples}
    result = {"predictions": str(predictions_path), "data": str(data), **squad_scores(examples, predictions),
              "unanswered": len(known - set(predictions)), "unknown_ids": len(set(predictions) - known)}
    if out is not None:
        write_json(Path(out) / QUESTION_SCORES_NAME, question_scores(examples, predictions))
        write_json(Path(out) / "rescore.json", result)
    return result


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
    plot_accuracy_size(report["entries"], out / ACCURACY_SIZE_PLOT)


def plot_accuracy_size(entries: list[dict], path: Path) -> None:
    """F1 against file size, one point per scored artifact (the accuracy-size curve of its precisions), beside the
    PyTorch F1 each was compared with."""
    scored = [e for e in entries if e["status"] == "ok" and e.get("file_bytes") and e["format"] != EAGER_FORMAT]
    if not scored:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e in scored:
        ax.scatter(e["file_bytes"] / 1e6, e["f1"])
        ax.annotate(f"{e['format']} {e['precision']}", (e["file_bytes"] / 1e6, e["f1"]), fontsize=7)
    for f1 in sorted({e["reference"]["f1"] for e in scored if e.get("reference")}):
        ax.axhline(f1, linestyle="--", linewidth=0.8, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("file MB (log)")
    ax.set_ylabel("F1 (dashed: PyTorch fp32 on the same questions)")
    ax.set_title("Accuracy against size", fontsize=9)
    _save(fig, path)


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
