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

from pocketbert.bench.report import render_eval_table, save_figure, write_report
from pocketbert.bench.runtimes import Target, load_runner, open_target, open_targets, stand_in, tokenizer_for
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.fsutil import atomic_dir, atomic_write_text, check_replaceable, read_json, write_json
from pocketbert.manifest import artifact_verification, tool_versions
from pocketbert.modeling import PRESETS
from pocketbert.qa import QAWindow, best_answers, decode_nbest, load_squad, prepare_features, question_scores, require_gold_answers, squad_scores
from pocketbert.results import EAGER_FORMAT, RESULTS_NAME, load_results, save_results
from pocketbert.rules import f1_verdict
from pocketbert.sessions import applied, settings_of

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
             stand_in_questions: int | None = None, verify: bool = True) -> dict:
    """Score each model; write eval.json and each model's predictions (and fold the scores into a bench run's
    report when `out` holds one). Every model is opened (and each artifact's sha256 checked, unless
    `verify=False`: --no-verify) before any is run, and `out` changes only once all are scored: as a whole.

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
        check_replaceable(out, force=False, update=True)  # a place that cannot be written fails now, not at the end
    with artifact_verification(verify):
        targets = open_targets(models, sizes=False)  # all of them, before any is run
    entries, checkpoint_predictions, predicted = [], {}, []

    def checkpoint_nbest(checkpoint: str, window: QAWindow, runner=None) -> dict:
        """A checkpoint's PyTorch answers, computed once whether it is a model to score or an artifact's reference."""
        if (checkpoint, window) not in checkpoint_predictions:
            target = open_target(checkpoint, sizes=False)
            checkpoint_predictions[checkpoint, window] = predict_nbest(
                runner or load_runner(target), tokenizer_for(target), examples, window, f"eval {checkpoint} (PyTorch)")
        return checkpoint_predictions[checkpoint, window]

    for target in targets:
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
        entry["runtime_settings"] = applied(settings_of(target.manifest), None) if target.manifest else None
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
        entries.append(judge({**entry, "status": "ok", "reason": None}))
        predicted.append((entries[-1], scored, nbest))

    report = {"schema": "pocketbert.eval/1",
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": tool_versions(), "entries": entries}
    if out is not None:
        # Every model's files and the report at once: a model that fails leaves `out` as it was.
        with atomic_dir(out, update=True) as staged:
            for entry, scored, nbest in predicted:
                entry["predictions"] = write_predictions(staged, entry["model"], scored, nbest)
            write_outputs(report, staged)
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
    if not known & set(predictions):
        sample = next(iter(predictions), None)
        raise PocketbertError(f"none of the {len(predictions)} ids in '{predictions_path}' is a question of '{data}'"
                              + (f" (e.g. {sample!r})" if sample is not None else "")
                              + "; pass the predictions made for this --data file")
    result = {"schema": "pocketbert.rescore/1", "predictions": str(predictions_path), "data": str(data),
              **squad_scores(examples, predictions),
              "unanswered": len(known - set(predictions)), "unknown_ids": len(set(predictions) - known)}
    if out is not None:
        with atomic_dir(out, update=True) as staged:  # both files, or neither
            write_json(staged / QUESTION_SCORES_NAME, question_scores(examples, predictions))
            write_json(staged / "rescore.json", result)
    return result


def judge(entry: dict) -> dict:
    """F1 kept against the PyTorch fp32 source, and the rulebook's accuracy verdict (rules.f1_verdict)."""
    ref_f1 = (entry.get("reference") or {}).get("f1")
    entry["f1_retained"] = entry["f1"] / ref_f1 if ref_f1 else None
    entry["verdict"] = f1_verdict(entry["precision"], entry["f1_retained"])
    return entry


def write_outputs(report: dict, out: Path) -> None:
    """Write eval.json and the accuracy-size plot into `out`; in a bench output folder, also merge the scores into
    its results.json and report.md (replacing earlier scores of the same artifact, length and data)."""
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
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

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
    save_figure(fig, path)


def describe(entry: dict) -> str:
    """One line for the terminal per evaluated model: EM/F1, beside PyTorch's and the int8 rule's verdict where
    there is one, or why it was not scored."""
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
