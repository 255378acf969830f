"""Tasks: what a checkpoint is for, said once. Export, bench, eval, the device harness and the loaders read a task
from here (by the checkpoint's config or the manifest's "task"), never by spelling it out themselves.

    task                 head (transformers)                   outputs                       metric
    question-answering   AutoModelForQuestionAnswering         start_logits, end_logits      EM / F1 (SQuAD v1.1)
                                                               [batch, seq]: over positions
    text-classification  AutoModelForSequenceClassification    logits [batch, labels]        accuracy / macro-F1

Pure Python, no pocketbert, torch or transformers imports: cheap to import anywhere (the CLI's --help included).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Task:
    """One task's facts: the head it loads, its outputs, how they are judged and scored, and its data."""

    name: str  # the pipeline name optimum, transformers.js and the manifest use
    head: str  # the transformers Auto class that loads a checkpoint of this task
    architecture_suffix: str  # config.architectures names end with it: DistilBertForQuestionAnswering
    outputs: tuple[str, ...]  # the artifact's outputs, in this order, under these names
    scores_over: str  # what the last axis of every output runs over: "positions" (seq) or "labels"
    choice: str  # what an output's argmax picks, in words (the rulebook's verdicts name it)
    metrics: tuple[str, ...]  # what `pocketbert eval` reports, headline first
    data_format: str  # the evaluation and training data it takes
    finetune_command: str  # what makes a checkpoint with this head
    labels_file: str | None = None  # label names, one per line, in logit order (classification)

    @property
    def masked(self) -> bool:
        """Whether outputs run over token positions, so padding positions are never compared or decoded."""
        return self.scores_over == "positions"

    def output_axis(self, seq, labels: int | None):
        """The size (or symbolic name) of the outputs' last axis: the sequence, or the number of labels."""
        return seq if self.masked else labels


QUESTION_ANSWERING = Task(
    name="question-answering", head="AutoModelForQuestionAnswering", architecture_suffix="ForQuestionAnswering",
    outputs=("start_logits", "end_logits"), scores_over="positions", choice="answer position",
    metrics=("f1", "exact_match"), data_format="SQuAD v1.1 JSON", finetune_command="pocketbert finetune qa")
TEXT_CLASSIFICATION = Task(
    name="text-classification", head="AutoModelForSequenceClassification",
    architecture_suffix="ForSequenceClassification", outputs=("logits",), scores_over="labels", choice="label",
    metrics=("accuracy", "macro_f1"), data_format='labelled text: JSON lines {"text", "label"}, CSV or TSV (SST-2)',
    finetune_command="pocketbert finetune classify", labels_file="labels.txt")

TASKS = {task.name: task for task in (QUESTION_ANSWERING, TEXT_CLASSIFICATION)}
DEFAULT_TASK = QUESTION_ANSWERING  # presets and bare encoders: what pocketbert has always exported


def task_named(name: str) -> Task:
    """The task called `name` (a manifest's "task"), or a ValueError naming the choices."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; pocketbert knows {', '.join(TASKS)}") from None


def task_of_architecture(architecture: str) -> Task | None:
    """The task of a transformers class name (DistilBertForSequenceClassification -> text-classification), or None."""
    for task in TASKS.values():
        if architecture.endswith(task.architecture_suffix):
            return task
    return None


def task_of_config(config) -> Task | None:
    """The task a transformers config was saved for, from its architectures; None for a bare encoder (BertModel) or
    no architectures at all."""
    for architecture in getattr(config, "architectures", None) or ():
        task = task_of_architecture(architecture)
        if task is not None:
            return task
    return None


def task_of_folder(folder) -> Task | None:
    """The task of a local checkpoint folder, read cheaply from its config.json (None: not a folder with a config
    naming a task; the loader then decides and reports)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
        return next(filter(None, map(task_of_architecture, config.get("architectures") or ())), None)
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def task_of_model(model) -> Task:
    """The task of a loaded transformers model, by its class (presets built from a config have no architectures)."""
    task = task_of_architecture(type(model).__name__)
    if task is None:
        raise ValueError(f"{type(model).__name__} is no {' or '.join(t.architecture_suffix for t in TASKS.values())} model")
    return task


def label_names(config) -> list[str]:
    """A classifier's label names in logit order (config.id2label; transformers' LABEL_i where none were given)."""
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(getattr(config, "num_labels", 0))]


__all__ = ["Task", "TASKS", "DEFAULT_TASK", "QUESTION_ANSWERING", "TEXT_CLASSIFICATION", "task_named",
           "task_of_architecture", "task_of_config", "task_of_model", "label_names"]
