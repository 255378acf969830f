"""`pocketbert eval`: a model's dev-set accuracy in its own runtime, next to its PyTorch source: SQuAD v1.1 EM/F1 for
question answering, accuracy / macro-F1 for text classification.

The task comes from each artifact's manifest or checkpoint's config; everything task-specific (reading the data,
cutting inputs, decoding outputs, scoring, the predictions files) is its TaskEval in bench/task_eval.py. Artifact and
PyTorch paths share that code and the same input length, so an fp32 artifact scores what its source model scores;
quantisation shows up as the difference.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import replace
from pathlib import Path

from pocketbert.bench.report import render_eval_table, save_figure, write_report
from pocketbert.bench.runtimes import Target, load_runner, open_target, open_targets, stand_in, tokenizer_for
from pocketbert.bench.task_eval import (
    PREDICTIONS_NAME,
    QUESTION_SCORES_NAME,
    EvalRequest,
    TaskEval,
    common_labels,
    evaluation_of,
    fit_window,
    models_named,
    one_task,
    predict,
    source_checkpoint,
    task_eval,
)
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.fsutil import atomic_dir, atomic_write_text, check_replaceable, read_json, write_json
from pocketbert.manifest import artifact_verification, tool_versions
from pocketbert.qa import QAWindow, load_squad, question_scores, require_gold_answers, squad_scores
from pocketbert.results import EAGER_FORMAT, RESULTS_NAME, load_results, save_results
from pocketbert.sessions import applied, settings_of
from pocketbert.tasks import QUESTION_ANSWERING

EVAL_NAME = "eval.json"
ACCURACY_SIZE_PLOT = "accuracy_size.png"
PREDICTIONS_DIR = "predictions"

__all__ = ["evaluate", "rescore", "judge", "describe", "predict_nbest", "fit_window", "reference_checkpoint",
           "write_outputs", "plot_accuracy_size", "EvalRequest", "EVAL_NAME", "PREDICTIONS_NAME",
           "QUESTION_SCORES_NAME"]


def predict_nbest(runner, tokenizer, examples, window: QAWindow, desc: str = "eval") -> dict[str, list[dict]]:
    """{example id: candidate answers, best first} from one QA runner: windows padded to the window length, run in
    batches, decoded alike for every runtime."""
    return predict(task_eval(QUESTION_ANSWERING), runner, tokenizer, examples, window, desc)


def prediction_folder(label: str) -> Path:
    """Where one model's predictions go under an eval output folder: predictions/LABEL (made file-name safe)."""
    return Path(PREDICTIONS_DIR) / (re.sub(r"[^\w.-]+", "-", label).strip("-") or "model")


def reference_checkpoint(target: Target) -> str | None:
    """The PyTorch model an artifact came from, if it is available here (a local folder or a preset)."""
    if target.format == EAGER_FORMAT:
        return target.path
    return source_checkpoint(target.manifest or {})


def evaluate(models: list[str], data: str | Path, window: EvalRequest | QAWindow | None = None,
             out: str | Path | None = None, stand_in_questions: int | None = None, verify: bool = True,
             labels: str | Path | None = None, seq_len: int | None = None) -> dict:
    """Score each model on `data`; write eval.json and each model's predictions (and fold the scores into a bench
    run's report when `out` holds one). Every model is opened (and each artifact's sha256 checked, unless
    `verify=False`: --no-verify) and the data read and checked against them before any is run, and `out` changes
    only once all are scored: as a whole.

    The models' task (their manifests or configs; all must share one) says what `data` is: SQuAD v1.1 JSON for
    question answering, labelled text (.jsonl/.csv/.tsv) for a classifier. `window` says how inputs are cut (an
    EvalRequest, or a QAWindow for QA; None: each task's defaults); `seq_len` and `labels` (a labels.txt naming a
    classifier's logits in order, instead of its manifest's or config's names) override it.

    `stand_in_questions`: an artifact run by a stand-in for its runtime (the Core ML reference evaluator, about
    2 s a window for a 3-layer student) is scored on the first N examples only, and so is its PyTorch reference,
    so its share of the fp32 score still compares the same examples.
    """
    request = EvalRequest.of(window)
    if labels is not None:
        request = replace(request, labels=str(labels))
    if seq_len is not None:
        request = replace(request, max_seq_len=seq_len)
    if stand_in_questions is not None and stand_in_questions < 1:
        raise PocketbertError(f"--stand-in-questions must be at least 1, not {stand_in_questions}")
    if not models:
        raise PocketbertError("nothing to evaluate; pass artifact folders or checkpoints, or --predictions FILE")
    if out is not None:
        check_replaceable(out, force=False, update=True)  # a place that cannot be written fails now, not at the end
    with artifact_verification(verify):
        targets = open_targets(models, sizes=False)  # all of them, before any is run
    evaluation = one_task(targets)
    named = models_named(targets)
    evaluation.check(request, named)
    dataset = evaluation.load(data, request, common_labels(targets), named)
    fitted_settings = [evaluation.fit(target, request) for target in targets]  # every length, before any model runs
    entries, source_predictions, predicted = [], {}, []

    def checkpoint_predictions(checkpoint: str, settings, count: int | None, runner=None):
        """A checkpoint's PyTorch predictions on the first `count` examples, computed once whether it is a model to
        score or an artifact's reference."""
        key = (checkpoint, settings, count)
        if key not in source_predictions:
            target = open_target(checkpoint, sizes=False)
            source_predictions[key] = predict(evaluation, runner or load_runner(target), tokenizer_for(target),
                                              evaluation.first(dataset, count), settings, f"eval {checkpoint} (PyTorch)")
        return source_predictions[key]

    for target, settings in zip(targets, fitted_settings):
        entry = {"model": target.label, "task": evaluation.task.name, "artifact": target.path, "format": target.format,
                 "runtime": target.runtime, "precision": target.precision, **evaluation.fields(settings),
                 "data": str(data), "random_weights": target.random_weights, "file_bytes": target.file_bytes}
        try:
            runner = load_runner(target)
        except NotRunnableHere as reason:
            entries.append({**entry, "status": "not_measurable", "reason": str(reason), **evaluation.empty_scores(),
                            "count": evaluation.count(dataset)})
            continue
        entry["runtime"] = stand_in(runner) or target.runtime
        entry["runtime_settings"] = applied(settings_of(target.manifest), None) if target.manifest else None
        count = stand_in_questions if stand_in(runner) else None
        scored = evaluation.first(dataset, count)
        if target.format == EAGER_FORMAT:
            predictions = checkpoint_predictions(target.path, settings, count, runner)
        else:
            predictions = predict(evaluation, runner, tokenizer_for(target), scored, settings, f"eval {target.label}")
            checkpoint = reference_checkpoint(target)
            if checkpoint is not None:
                reference = evaluation.score(scored, checkpoint_predictions(checkpoint, settings, count))
                entry["reference"] = {"checkpoint": checkpoint, **evaluation.summary(reference)}
        entry.update(evaluation.score(scored, predictions))
        entries.append(evaluation.judge({**entry, "status": "ok", "reason": None}))
        predicted.append((entries[-1], scored, predictions))

    report = {"schema": "pocketbert.eval/1", "task": evaluation.task.name,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": tool_versions(), "entries": entries}
    if out is not None:
        # Every model's files and the report at once: a model that fails leaves `out` as it was.
        with atomic_dir(out, update=True) as staged:
            for entry, scored, predictions in predicted:
                folder = prediction_folder(entry["model"])
                (staged / folder).mkdir(parents=True, exist_ok=True)
                evaluation.write(staged / folder, scored, predictions, entry)
                entry["predictions"] = str(folder)
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
    """The headline metric's share of the PyTorch fp32 source's (F1 for QA, accuracy for a classifier) and the
    rulebook's verdict on it (rules.f1_verdict), by the entry's task."""
    return evaluation_of(entry).judge(entry)


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
    """The headline metric (F1, accuracy) against file size, one point per scored artifact (the accuracy-size curve
    of its precisions), beside the PyTorch score each was compared with."""
    scored = [e for e in entries if e["status"] == "ok" and e.get("file_bytes") and e["format"] != EAGER_FORMAT]
    if not scored:
        return
    evaluation: TaskEval = evaluation_of(scored[0])
    metric = evaluation.headline
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e in scored:
        ax.scatter(e["file_bytes"] / 1e6, e[metric])
        ax.annotate(f"{e['format']} {e['precision']}", (e["file_bytes"] / 1e6, e[metric]), fontsize=7)
    for value in sorted({e["reference"][metric] for e in scored if e.get("reference")}):
        ax.axhline(value, linestyle="--", linewidth=0.8, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("file MB (log)")
    ax.set_ylabel(f"{evaluation.headline_name} (dashed: PyTorch fp32 on the same {evaluation.unit})")
    ax.set_title(f"Accuracy against size ({evaluation.title})", fontsize=9)
    save_figure(fig, path)


def describe(entry: dict) -> str:
    """One line for the terminal per evaluated model: its metrics (EM/F1, accuracy/macro-F1) beside PyTorch's and the
    rule's verdict where there is one, or why it was not scored."""
    return evaluation_of(entry).describe(entry)
