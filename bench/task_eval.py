"""Per-task evaluation: what `pocketbert eval` and `pocketbert device run --eval` need to know about a task, said
once per task and looked up by the task's name (pocketbert/tasks.py). Neither command spells out a task itself.

A TaskEval says how to
    check    refuse options that do not apply to the task, or are out of range
    load     read the dev data and check it against the models (a classifier's labels)
    fit      pick the input length a model runs (a QA window; a classifier's text length)
    inputs   tokenise the data at that length: an int64 [rows, length] array per input name (+ what decoding needs)
    decode   turn the model's outputs (one tuple for all rows) into predictions
    score    the task's metrics on them, headline first (tasks.Task.metrics)
    write    the predictions files a person inspects (and a classifier's confusion-matrix PNG)
and how its results read: report table columns and one terminal line. `predict` runs any Runner in batches.

    task                 --data                                      predictions written          headline
    question-answering   SQuAD v1.1 JSON                             predictions.json (+ n-best)  F1
    text-classification  labelled text .jsonl/.csv/.tsv (+ --labels)  predictions.jsonl + PNG      accuracy

The headline metric is what the rulebook judges below fp32 (rules.f1_verdict): its share of the fp32 source's,
stored as "<headline>_retained" (f1_retained, accuracy_retained).
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from tqdm import tqdm

from pocketbert.classification import EVAL_LENGTH as CLASSIFY_LENGTH
from pocketbert.classification import classification_scores, confusion_matrix
from pocketbert.data.labelled_text import FORMATS as LABELLED_FORMATS
from pocketbert.data.labelled_text import read_labelled_file, read_labels_file
from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_write_text, write_json
from pocketbert.options import at_least, check_options, qa_window_problems
from pocketbert.qa import (
    DOC_STRIDE,
    MAX_QUERY_LEN,
    MAX_SEQ_LEN,
    QAWindow,
    best_answers,
    decode_nbest,
    load_squad,
    prepare_features,
    question_scores,
    require_gold_answers,
    squad_scores,
)
from pocketbert.rules import f1_verdict
from pocketbert.tasks import QUESTION_ANSWERING, TEXT_CLASSIFICATION, Task

if TYPE_CHECKING:
    from pocketbert.bench.runtimes import Target

BATCH = 16  # rows per runner call (a batch-1 artifact is fed row by row by its Runner)
PREDICTIONS_NAME = "predictions.json"  # QA: {question id: answer text}, what the official v1.1 script reads
QUESTION_SCORES_NAME = "question_scores.json"
LABEL_PREDICTIONS_NAME = "predictions.jsonl"  # classification: one line per text
CONFUSION_PLOT = "confusion.png"


@dataclass(frozen=True)
class EvalRequest:
    """How the user asked inputs to be cut (None: the task's default) and, for a classifier, a labels.txt naming its
    logits in order (None: the labels the artifact's manifest or the checkpoint's config names)."""

    max_seq_len: int | None = None
    doc_stride: int | None = None  # QA only
    max_query_len: int | None = None  # QA only
    labels: str | None = None  # classification only
    text_column: str | None = None  # classification only: default "text", else "sentence"
    label_column: str | None = None  # classification only: default "label"
    # A QA window a caller built in code: used as it is (clamped to each model), not checked as options typed on the
    # command line are (its unset defaults, such as a 64-token question limit, need not fit a short window).
    window: QAWindow | None = None

    @classmethod
    def of(cls, window: EvalRequest | QAWindow | None) -> EvalRequest:
        """A request from what callers pass: a request, a QA window (a classifier reads only its length), or None
        (each task's defaults)."""
        if isinstance(window, EvalRequest):
            return window
        if isinstance(window, QAWindow):
            return cls(max_seq_len=window.max_seq_len, window=window)
        return cls()


def _batches(count: int) -> range:
    return range(0, count, BATCH)


def run_batched(runner, features: dict, desc: str = "eval") -> tuple[np.ndarray, ...]:
    """The runner's outputs on every row of `features` (its input names picked out), BATCH rows per call, joined."""
    rows = len(features[runner.input_names[0]])
    outputs: list[tuple] = []
    for i in tqdm(_batches(rows), desc=desc, unit="batch"):
        outputs.append(runner({name: features[name][i:i + BATCH] for name in runner.input_names}))
    return tuple(np.concatenate(parts) for parts in zip(*outputs))


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class TaskEval(ABC):
    """One task's evaluation. `data` is what `load` returns (the task's own type), `settings` what `fit` returns
    (hashable: predictions of a checkpoint are cached by it), `predictions` what `decode` returns."""

    task: ClassVar[Task]
    headline_name: ClassVar[str]  # the headline metric in words (f1 -> "F1")
    title: ClassVar[str]  # the report's "## Accuracy (TITLE)" section
    unit: ClassVar[str]  # what the data counts: questions, texts
    columns: ClassVar[tuple[tuple[str, str], ...]]  # (column name, metric key) in the report's tables

    @property
    def headline(self) -> str:
        """The metric key the rulebook judges: the task's first metric."""
        return self.task.metrics[0]

    @property
    def retained_key(self) -> str:
        """Where an entry keeps the headline's share of the fp32 source's (f1_retained, accuracy_retained)."""
        return f"{self.headline}_retained"

    @abstractmethod
    def check(self, request: EvalRequest, models: str) -> None:
        """Refuse in one line options that do not apply to this task (`models` names them) or are out of range."""

    @abstractmethod
    def load(self, path: str | Path, request: EvalRequest, labels: list[str] | None, models: str,
             limit: int | None = None) -> Any:
        """The dev data at `path` (its first `limit` examples), checked against the models' `labels` (a classifier's
        names in logit order; None for QA); one line naming the file and the fix for anything wrong."""

    @abstractmethod
    def fit(self, target: Target, request: EvalRequest) -> Any:
        """The settings `target` runs: the requested length if it takes it, else its longest length below it."""

    @abstractmethod
    def at_length(self, seq_len: int) -> Any:
        """The settings at a length already fitted to the artifact (the device harness's chosen length)."""

    @abstractmethod
    def fields(self, settings) -> dict:
        """What an entry records about the settings: seq_len (and QA's doc_stride)."""

    @abstractmethod
    def inputs(self, tokenizer, data, settings) -> dict:
        """The data tokenised at `settings`: int64 [rows, length] per input name, and what `decode` needs."""

    @abstractmethod
    def decode(self, data, features: dict, outputs) -> Any:
        """Predictions from the model's outputs on every row of `features` (a tuple in the task's output order)."""

    @abstractmethod
    def score(self, data, predictions) -> dict:
        """The task's metrics (percent) and the example count."""

    @abstractmethod
    def first(self, data, count: int | None) -> Any:
        """The first `count` examples of `data` (all of them for None)."""

    @abstractmethod
    def count(self, data) -> int:
        """How many examples `data` holds."""

    @abstractmethod
    def write(self, folder: Path, data, predictions, entry: dict) -> None:
        """The predictions files of one model into `folder` (made here)."""

    def empty_scores(self) -> dict:
        """An unscored entry's metrics: each None."""
        return {metric: None for metric in self.task.metrics}

    def summary(self, scores: dict) -> dict:
        """The metrics and count of `scores`, without per-example or per-label detail (a reference's figures)."""
        return {key: scores.get(key) for key in (*self.task.metrics, "count")}

    def metric_text(self, scores: dict) -> str:
        """"EM 80.00 F1 85.00" / "accuracy 90.00 macro-F1 88.50"."""
        return " ".join(f"{name} {_fmt(scores.get(key))}" for name, key in self.columns)

    def judge(self, entry: dict) -> dict:
        """The headline's share of the PyTorch fp32 source's, and the rulebook's verdict (rules.f1_verdict)."""
        reference = (entry.get("reference") or {}).get(self.headline)
        retained = entry[self.headline] / reference if reference and entry.get(self.headline) is not None else None
        entry[self.retained_key] = retained
        entry["verdict"] = f1_verdict(entry["precision"], retained, metric=self.headline_name)
        return entry

    def table_header(self) -> list[str]:
        """The report's accuracy table columns for this task."""
        names = [name for name, _ in self.columns]
        return ["model", "format", "precision", "seq", *names, *(f"PyTorch {name}" for name in names),
                f"{self.headline_name} kept", "MLPerf int8 rule", self.unit]

    def table_row(self, entry: dict) -> list:
        """One entry as a row under `table_header`."""
        reference = entry.get("reference") or {}
        retained = entry.get(self.retained_key)
        return [entry["model"], entry["format"], entry["precision"], entry["seq_len"],
                *(_fmt(entry.get(key)) for _, key in self.columns), *(_fmt(reference.get(key)) for _, key in self.columns),
                "-" if retained is None else f"{100 * retained:.1f}%", entry.get("verdict", "-"), entry["count"]]

    def describe(self, entry: dict) -> str:
        """One terminal line per evaluated model: its metrics beside PyTorch's and the rule's verdict where there is
        one, or why it was not scored."""
        if entry["status"] != "ok":
            return f"{entry['model']}: {entry['status']} ({entry['reason']})"
        line = f"{entry['model']} [{entry['runtime']}/{entry['precision']}, seq {entry['seq_len']}]: " \
               f"{self.metric_text(entry)} on {entry['count']} {self.unit}"
        if entry.get("reference"):
            line += f"; PyTorch {self.metric_text(entry['reference'])}"
            if entry.get("verdict", "-") != "-":
                line += f"; int8 rule: {entry['verdict']}"
        return line

    def describe_device(self, entry: dict) -> str:
        """One terminal line per device --eval entry: the metrics on the device beside this host's and the PyTorch
        source's (with the rule's verdict), or why there are none."""
        where = entry["device"]["target"]
        head = f"eval {entry['model']} {entry['format']}/{entry['precision']} on {where}"
        if entry["status"] != "ok":
            return f"{head}: {entry['reason']}"
        host = entry.get("host") or {}
        line = f"{head}: {self.metric_text(entry)} on {entry['count']} {self.unit}"
        line += f"; on this host {self.metric_text(host)}" if self.headline in host else \
            f"; not on this host ({host.get('reason')})"
        retained = entry.get(self.retained_key)
        if entry.get("reference") and retained is not None:
            line += f"; PyTorch fp32 {self.metric_text(entry['reference'])} ({100 * retained:.1f}% kept"
            line += f", int8 rule: {entry['verdict']})" if entry.get("verdict", "-") != "-" else ")"
        return line


def predict(evaluation: TaskEval, runner, tokenizer, data, settings, desc: str = "eval"):
    """One runner's predictions on `data`: inputs cut at `settings`, run in batches, decoded alike for every runtime."""
    features = evaluation.inputs(tokenizer, data, settings)
    return evaluation.decode(data, features, run_batched(runner, features, desc))


# --- question answering ---------------------------------------------------------------------------------------

def fit_window(target: Target, window: QAWindow) -> QAWindow:
    """`window`, clamped, at its own length if the artifact runs it, else at the artifact's longest length below it."""
    if target.lengths is None:
        return window.clamped(target.max_len)
    fitting = [n for n in target.lengths if n <= window.max_seq_len]
    if not fitting:
        raise PocketbertError(f"'{target.path}' runs lengths {list(target.lengths)} (max {target.max_len}); "
                              f"pass --max-seq-len with one of them")
    return replace(window, max_seq_len=max(fitting)).clamped()


class QuestionAnsweringEval(TaskEval):
    """SQuAD v1.1 EM/F1: windows of each (question, context), spans decoded over all of a question's windows."""

    task = QUESTION_ANSWERING
    headline_name = "F1"
    title = "SQuAD v1.1"
    unit = "questions"
    columns = (("EM", "exact_match"), ("F1", "f1"))

    def window(self, request: EvalRequest) -> QAWindow:
        """The window asked for, each unset setting at its default (clamped to each model later)."""
        if request.window is not None:
            return replace(request.window, max_seq_len=request.max_seq_len or request.window.max_seq_len)
        return QAWindow(MAX_SEQ_LEN if request.max_seq_len is None else request.max_seq_len,
                        DOC_STRIDE if request.doc_stride is None else request.doc_stride,
                        MAX_QUERY_LEN if request.max_query_len is None else request.max_query_len)

    def check(self, request: EvalRequest, models: str) -> None:
        given = [option for option, value in (("--labels", request.labels), ("--text-column", request.text_column),
                                              ("--label-column", request.label_column)) if value is not None]
        if given:
            raise PocketbertError(f"{' and '.join(given)} describe a text classifier's data, but {models} answers "
                                  f"questions ({self.task.name}); drop {' and '.join(given)}")
        if request.window is None:
            check_options(*qa_window_problems(MAX_SEQ_LEN if request.max_seq_len is None else request.max_seq_len,
                                              request.doc_stride, request.max_query_len))

    def load(self, path, request, labels, models, limit=None):
        if Path(path).suffix.lower() in LABELLED_FORMATS:
            raise PocketbertError(f"'{path}' is labelled text ({TEXT_CLASSIFICATION.name} data), but {models} answers "
                                  f"questions ({self.task.name}); pass a {self.task.data_format} file such as "
                                  "dev-v1.1.json")
        return require_gold_answers(load_squad(path)[:limit], path)

    def fit(self, target, request):
        return fit_window(target, self.window(request))

    def at_length(self, seq_len):
        return QAWindow(max_seq_len=seq_len).clamped()

    def fields(self, settings):
        return {"seq_len": settings.max_seq_len, "doc_stride": settings.doc_stride}

    def inputs(self, tokenizer, data, settings):
        return prepare_features(tokenizer, data, settings)

    def decode(self, data, features, outputs):
        """{question id: candidate answers, best first} (qa.decode_nbest over every window of a question)."""
        start, end = outputs[:2]
        return decode_nbest(data, features, start, end)

    def score(self, data, predictions):
        return squad_scores(data, best_answers(predictions))

    def first(self, data, count):
        return data[:count]

    def count(self, data):
        return len(data)

    def write(self, folder, data, predictions, entry):
        """The SQuAD ecosystem's shapes: predictions.json ({question id: answer text}, what the official v1.1
        evaluate script reads), nbest_predictions.json, and question_scores.json (EM/F1 per question)."""
        answers = best_answers(predictions)
        write_json(folder / PREDICTIONS_NAME, answers)
        write_json(folder / "nbest_predictions.json", predictions)
        write_json(folder / QUESTION_SCORES_NAME, question_scores(data, answers))


# --- text classification ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelledSet:
    """A classifier's dev data, checked: each text with its gold label id in the models' logit order."""

    texts: list[str]
    gold: list[int]
    labels: list[str]  # names in logit order
    lines: list[int]  # each text's line in the file
    path: str
    labels_source: str  # where the names came from (the manifest or config, or --labels)


@dataclass(frozen=True)
class LabelPredictions:
    """A classifier's choice per text and its probabilities over the labels (a softmax of its logits)."""

    predicted: np.ndarray  # [texts] label ids
    probabilities: np.ndarray  # [texts, labels]


class TextClassificationEval(TaskEval):
    """Accuracy, macro-F1 and each label's precision/recall (pocketbert.classification) of one text per row, cut at
    the classifier's length; a confusion matrix per model as a PNG."""

    task = TEXT_CLASSIFICATION
    headline_name = "accuracy"
    title = "text classification"
    unit = "texts"
    columns = (("accuracy", "accuracy"), ("macro-F1", "macro_f1"))

    def check(self, request: EvalRequest, models: str) -> None:
        given = [option for option, value in (("--doc-stride", request.doc_stride),
                                              ("--max-query-len", request.max_query_len)) if value is not None]
        if given:
            raise PocketbertError(f"{' and '.join(given)} cut question-answering windows, but {models} classifies "
                                  f"texts ({self.task.name}); drop {' and '.join(given)}")
        check_options(at_least("--max-seq-len", request.max_seq_len, 8))

    def load(self, path, request, labels, models, limit=None):
        if Path(path).suffix.lower() == ".json":
            raise PocketbertError(f"'{path}' is a .json file (SQuAD, {QUESTION_ANSWERING.name} data), but {models} "
                                  f"classifies texts ({self.task.name}); pass a .jsonl, .csv or .tsv file of labelled "
                                  f"text ({self.task.data_format})")
        rows = read_labelled_file(path, request.text_column, request.label_column)
        texts, names, lines = rows.texts[:limit], rows.labels[:limit], rows.lines[:limit]
        source = "the models' labels (manifest or config)"
        if request.labels is not None:
            given = read_labels_file(request.labels)
            if labels is not None and len(given) != len(labels):
                raise PocketbertError(f"--labels '{request.labels}' names {len(given)} labels but {models} predicts "
                                      f"{len(labels)} ({', '.join(labels)}); pass a labels.txt with one name per logit")
            labels, source = given, f"'{request.labels}'"
        if not labels:
            raise PocketbertError(f"{models} names no labels (no \"labels\" in its manifest, no id2label in its "
                                  "config); pass --labels labels.txt with one name per logit")
        index = {name: i for i, name in enumerate(labels)}
        unknown = next((i for i, name in enumerate(names) if name not in index), None)
        if unknown is not None:
            shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
            raise PocketbertError(f"'{path}' line {lines[unknown]} has the label '{names[unknown]}', which {models} "
                                  f"does not predict (its labels, from {source}: {shown}); fix the label, or pass "
                                  "--labels labels.txt naming the model's logits as the data does")
        return LabelledSet(list(texts), [index[name] for name in names], list(labels), list(lines), str(path), source)

    def fit(self, target, request):
        requested = request.max_seq_len
        if target.lengths is None:
            return min(CLASSIFY_LENGTH if requested is None else requested, target.max_len)
        fitting = [n for n in target.lengths if n <= (CLASSIFY_LENGTH if requested is None else requested)]
        if fitting:
            return max(fitting)
        if requested is None:  # only lengths above the default: the artifact says how long its texts are
            return min(target.lengths)
        raise PocketbertError(f"'{target.path}' runs lengths {list(target.lengths)} (max {target.max_len}); "
                              f"pass --max-seq-len with one of them")

    def at_length(self, seq_len):
        return seq_len

    def fields(self, settings):
        return {"seq_len": settings}

    def inputs(self, tokenizer, data, settings):
        from pocketbert.reference import text_rows  # lazy: torch, and only running a model needs it

        return text_rows(tokenizer, data.texts, ("input_ids", "attention_mask", "token_type_ids"), settings)

    def decode(self, data, features, outputs):
        logits = np.asarray(outputs[0], dtype=np.float64).reshape(len(data.texts), -1)
        if logits.shape[1] != len(data.labels):
            raise PocketbertError(f"the model returns {logits.shape[1]} scores per text but its labels are "
                                  f"{len(data.labels)} ({', '.join(data.labels)}); pass --labels with one name per logit")
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return LabelPredictions(logits.argmax(axis=1), shifted / shifted.sum(axis=1, keepdims=True))

    def score(self, data, predictions):
        predicted = predictions.predicted.tolist()
        return {**classification_scores(data.gold, predicted, data.labels), "labels": data.labels,
                "confusion": confusion_matrix(data.gold, predicted, data.labels)}

    def first(self, data, count):
        if count is None:
            return data
        return replace(data, texts=data.texts[:count], gold=data.gold[:count], lines=data.lines[:count])

    def count(self, data):
        return len(data.texts)

    def write(self, folder, data, predictions, entry):
        """predictions.jsonl (per text: its index and file line, gold and predicted label, whether they agree, the
        probability of each label, the text) and confusion.png (counts, gold by predicted)."""
        lines = []
        for i, (text, gold, chosen, line) in enumerate(zip(data.texts, data.gold, predictions.predicted.tolist(),
                                                           data.lines)):
            scores = {name: round(float(p), 6) for name, p in zip(data.labels, predictions.probabilities[i])}
            lines.append(json.dumps({"index": i, "line": line, "gold": data.labels[gold], "predicted": data.labels[chosen],
                                     "correct": gold == chosen, "scores": scores, "text": text}, ensure_ascii=False))
        atomic_write_text(folder / LABEL_PREDICTIONS_NAME, "".join(f"{line}\n" for line in lines))
        plot_confusion(entry["confusion"], data.labels, folder / CONFUSION_PLOT,
                       f"{entry['model']} [{entry['format']}/{entry['precision']}]: accuracy {entry['accuracy']:.1f}% "
                       f"on {entry['count']} texts")


def plot_confusion(counts: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    """The confusion matrix as a PNG: gold labels down, predicted across, each cell's count written in it."""
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    from pocketbert.bench.report import save_figure

    matrix = np.asarray(counts)
    size = max(4.0, 0.7 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    threshold = matrix.max() / 2 if matrix.size and matrix.max() else math.inf
    for row in ticks:
        for column in ticks:
            ax.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[row, column] > threshold else "black")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("gold label")
    ax.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)


# --- the registry --------------------------------------------------------------------------------------------

TASK_EVALS: dict[str, TaskEval] = {evaluation.task.name: evaluation
                                   for evaluation in (QuestionAnsweringEval(), TextClassificationEval())}


def task_eval(task: Task) -> TaskEval:
    """The evaluation of `task` (every task in pocketbert/tasks.py has one)."""
    return TASK_EVALS[task.name]


def evaluation_of(entry: dict) -> TaskEval:
    """The evaluation that wrote an eval entry (entries from before tasks existed are question-answering)."""
    return TASK_EVALS[entry.get("task") or QUESTION_ANSWERING.name]


def one_task(targets: list[Target]) -> TaskEval:
    """The one evaluation every model shares (one --data file scores one task); two tasks: one line naming both."""
    first = targets[0]
    other = next((target for target in targets if target.task is not first.task), None)
    if other is not None:
        raise PocketbertError(f"'{first.path}' is a {first.task.name} model but '{other.path}' is a {other.task.name} "
                              "model; one dev data file scores one task: evaluate them in separate runs")
    return task_eval(first.task)


def common_labels(targets: list[Target]) -> list[str] | None:
    """The label names every model shares in logit order (None for QA); models that name different labels are
    refused in one line: one data file scores them alike only if their logits mean the same."""
    first = targets[0]
    for target in targets[1:]:
        if target.labels != first.labels:
            raise PocketbertError(f"'{first.path}' predicts the labels {first.labels} but '{target.path}' predicts "
                                  f"{target.labels}; evaluate models with different labels in separate runs")
    return first.labels


def models_named(targets: list[Target]) -> str:
    """The models in a message: 'a', or 'a' and 2 more."""
    more = f" (and {len(targets) - 1} more)" if len(targets) > 1 else ""
    return f"'{targets[0].path}'{more}"


def by_task(entries: list[dict]) -> list[tuple[TaskEval, list[dict]]]:
    """Eval entries grouped by task, in the order the tasks first appear."""
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(evaluation_of(entry).task.name, []).append(entry)
    return [(TASK_EVALS[name], group) for name, group in groups.items()]


def source_checkpoint(manifest: dict) -> str | None:
    """The PyTorch model an artifact came from, if it is available here (a local folder or a preset)."""
    from pocketbert.modeling import PRESETS

    checkpoint = (manifest.get("source") or {}).get("checkpoint")
    if checkpoint in PRESETS or (checkpoint and (Path(checkpoint) / "config.json").is_file()):
        return checkpoint
    return None


__all__ = ["EvalRequest", "TaskEval", "QuestionAnsweringEval", "TextClassificationEval", "LabelledSet",
           "LabelPredictions", "TASK_EVALS", "task_eval", "evaluation_of", "one_task", "common_labels",
           "models_named", "by_task", "source_checkpoint", "predict", "run_batched", "fit_window", "plot_confusion"]
