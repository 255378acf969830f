"""QA training data and evaluation on top of pocketbert.qa (the one place that tokenises and decodes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pocketbert.distill.squad_checks import check_answers, load_v1_squad
from pocketbert.errors import PocketbertError
from pocketbert.modeling import check_tokenizer_fits, load_config, load_qa_model, load_tokenizer, uses_token_type_ids
from pocketbert.qa import QAWindow, decode_answers, prepare_features, squad_scores

WINDOW_FIELDS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_FIELDS = ("start_positions", "end_positions")


class QAFeatureDataset(torch.utils.data.Dataset):
    """Training windows cut to their real tokens, with gold start/end token positions ([CLS] when the answer
    is outside the window) and the window's index (the key of the teacher-logit cache)."""

    def __init__(self, features: dict):
        lengths = features["attention_mask"].sum(axis=1)
        self.windows = [{name: torch.as_tensor(features[name][i, :length]) for name in WINDOW_FIELDS}
                        for i, length in enumerate(lengths)]
        for i, window in enumerate(self.windows):
            window.update({name: torch.tensor(int(features[name][i])) for name in LABEL_FIELDS})
            window["window_index"] = torch.tensor(i)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        return self.windows[index]


def load_training_features(path, tokenizer, window: QAWindow, max_examples: int | None = None):
    """(checked examples, dataset, the answer check's report): answers that do not point at their text are
    moved to it when the context holds it exactly once, otherwise the question is left out."""
    examples, report = check_answers(load_v1_squad(path)[:max_examples], path)
    features = prepare_features(tokenizer, examples, window, with_labels=True)
    return examples, QAFeatureDataset(features), report


@torch.no_grad()
def predict_logits(model, features: dict, batch_size: int = 32, desc: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """The model's [windows, length] start and end logits over prepared features, in batches (eval mode, no grad)."""
    model.eval()
    device = next(model.parameters()).device
    names = WINDOW_FIELDS if uses_token_type_ids(model) else WINDOW_FIELDS[:2]
    starts, ends = [], []
    n = len(features["input_ids"])
    for begin in tqdm(range(0, n, batch_size), desc=desc, leave=False):
        batch = {name: torch.as_tensor(features[name][begin:begin + batch_size], device=device) for name in names}
        out = model(**batch)
        starts.append(out.start_logits.float().cpu().numpy())
        ends.append(out.end_logits.float().cpu().numpy())
    return np.concatenate(starts), np.concatenate(ends)


def evaluate_qa(model, tokenizer, examples, window: QAWindow, batch_size: int = 32) -> dict:
    """SQuAD v1.1 EM / F1 (percent) of `model` on `examples`."""
    features = prepare_features(tokenizer, examples, window)
    start_logits, end_logits = predict_logits(model, features, batch_size, desc="evaluate")
    predictions = decode_answers(examples, features, start_logits, end_logits)
    return squad_scores(examples, predictions)


def _load_trainable_qa_model(path, seed: int):
    """A *ForQuestionAnswering from any checkpoint; a fresh qa_outputs head where it has none (intended here)."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering, set_seed  # lazy: as in train_qa

    from pocketbert.distill.trainer import load_pretrained  # lazy: as in train_qa

    set_seed(seed)  # the fresh head's initialisation is part of the seeded run
    config = load_pretrained(AutoConfig, path, "model")
    model, info = load_pretrained(AutoModelForQuestionAnswering, path, "model", output_loading_info=True)
    fresh_head = any(key.startswith("qa_outputs") for key in info.get("missing_keys", ()))
    return model, config.model_type, fresh_head


@dataclass(frozen=True)
class QAData:
    """What a QA run trains on and scores against: SQuAD v1.1 files, the window they are cut into, optional caps."""

    train: str | Path
    dev: str | Path
    window: QAWindow = QAWindow()
    max_train_examples: int | None = None
    max_dev_examples: int | None = None


@dataclass(frozen=True)
class QALoss:
    """L = alpha_ce·KL(start, end)·T² against the teacher's logits + alpha_task·CE against the gold spans
    + alpha_cos·(1 - cos) between the student's and the teacher's last hidden states (same width needed).
    Without a teacher only the gold-span term trains."""

    teacher: str | Path | None = None
    temperature: float = 2.0
    alpha_ce: float = 0.5
    alpha_task: float = 0.5
    alpha_cos: float = 0.0


FINE_TUNING = QALoss(alpha_task=1.0)  # no teacher: the gold-span cross-entropy is the whole loss


def train_qa(model_path, data: QAData, out, config, loss: QALoss = QALoss()) -> dict:
    """`pocketbert finetune qa` (no teacher) and `pocketbert distill qa`: train, save, score on dev."""
    # lazy: distill.trainer loads the HF Trainer and model classes (seconds); `pocketbert --help` imports this
    # module (through demo.pipeline, for QAData and QALoss) and only training needs them.
    from pocketbert.distill.trainer import PaddingCollator, QATrainer, build_trainer, prepare_run_dir, train_and_save

    train_path, dev_path, window, teacher_path = data.train, data.dev, data.window, loss.teacher
    tokenizer = load_tokenizer(model_path)  # refuses a missing or degenerate tokenizer (all [UNK]) before any work
    if (Path(model_path) / "config.json").is_file():  # ids past the embedding: one line now, not an IndexError later
        check_tokenizer_fits(tokenizer, load_config(model_path), model_path)
    train_examples, dataset, data_check = load_training_features(train_path, tokenizer, window, data.max_train_examples)
    dev_examples = load_v1_squad(dev_path)[:data.max_dev_examples]
    teacher = None
    if teacher_path is not None:
        teacher = load_qa_model(teacher_path).model
        if load_tokenizer(teacher_path).get_vocab() != tokenizer.get_vocab():
            raise PocketbertError(f"teacher '{teacher_path}' and student '{model_path}' use different vocabularies; "
                                  "build the student with `pocketbert distill init` from the teacher")
    # Loaded before the run folder exists: a damaged checkpoint leaves nothing behind that blocks the rerun.
    model, model_type, fresh_head = _load_trainable_qa_model(model_path, config.seed)
    alpha_ce, alpha_cos = (loss.alpha_ce, loss.alpha_cos) if teacher is not None else (0.0, 0.0)
    if teacher is not None and alpha_cos > 0 and teacher.config.hidden_size != model.config.hidden_size:
        raise PocketbertError(f"--alpha-cos compares hidden states, but the teacher is {teacher.config.hidden_size} wide "
                              f"and the student {model.config.hidden_size}; use --alpha-cos 0 for a narrower student")
    out = prepare_run_dir(out, config)
    loss_terms = {"ce (KL start/end, *T^2)": alpha_ce, "task (CE vs gold spans)": loss.alpha_task,
                  "cos (last hidden states)": alpha_cos}
    notes = ["loss terms: " + ", ".join(f"{name} x{alpha}" for name, alpha in loss_terms.items() if alpha > 0)]
    if data_check["summary"]:
        notes.append(f"training data '{train_path}': {data_check['summary']}")
    if fresh_head:
        notes.append(f"'{model_path}' has no QA head: a fresh qa_outputs layer is trained")
    if teacher is not None and uses_token_type_ids(teacher) and not uses_token_type_ids(model):
        notes.append("the teacher reads token_type_ids; the student does not")
    collator = PaddingCollator(WINDOW_FIELDS, (*LABEL_FIELDS, "window_index"), tokenizer.pad_token_id,
                               None if config.dynamic_padding else window.clamped().max_seq_len)
    trainer = build_trainer(QATrainer, model, dataset, out, config, collator=collator, teacher=teacher,
                            temperature=loss.temperature, alpha_ce=alpha_ce, alpha_task=loss.alpha_task, alpha_cos=alpha_cos,
                            cache_teacher=config.teacher_cache)
    run_info = {
        "command": "distill qa" if teacher is not None else "finetune qa",
        "model": str(model_path), "model_type": model_type, "teacher": str(teacher_path) if teacher_path else None,
        "train": str(train_path), "dev": str(dev_path),
        "train_examples": len(train_examples), "train_features": len(dataset), "dev_examples": len(dev_examples),
        "training_data_check": {k: v for k, v in data_check.items() if k != "summary"},
        "features": {"max_seq_len": window.max_seq_len, "doc_stride": window.doc_stride,
                     "max_query_len": window.max_query_len},
        "temperature": loss.temperature, "loss_terms": loss_terms, "fresh_qa_head": fresh_head, "notes": notes,
    }
    return train_and_save(trainer, out, config, tokenizer, run_info,
                          evaluate=lambda m: evaluate_qa(m, tokenizer, dev_examples, window))
