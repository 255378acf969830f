"""QA training data and evaluation on top of pocketbert.qa (the one place that tokenises and decodes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pocketbert.modeling import uses_token_type_ids
from pocketbert.qa import (DOC_STRIDE, MAX_QUERY_LEN, MAX_SEQ_LEN, decode_answers, load_squad, prepare_features,
                          squad_scores)

TENSOR_FIELDS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")


class QAFeatureDataset(torch.utils.data.Dataset):
    """Training windows with gold start/end token positions ([CLS] when the answer is outside the window)."""

    def __init__(self, features: dict):
        self.tensors = {name: torch.as_tensor(features[name]) for name in TENSOR_FIELDS if name in features}

    def __len__(self) -> int:
        return len(self.tensors["input_ids"])

    def __getitem__(self, index: int) -> dict:
        return {name: values[index] for name, values in self.tensors.items()}


def load_training_features(path, tokenizer, max_seq_len: int, doc_stride: int, max_query_len: int,
                           max_examples: int | None = None):
    examples = load_squad(path)[:max_examples]
    features = prepare_features(tokenizer, examples, max_seq_len, doc_stride, max_query_len, with_labels=True)
    return examples, QAFeatureDataset(features)


@torch.no_grad()
def predict_logits(model, features: dict, batch_size: int = 32, desc: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    device = next(model.parameters()).device
    names = ("input_ids", "attention_mask", "token_type_ids") if uses_token_type_ids(model) else ("input_ids", "attention_mask")
    starts, ends = [], []
    n = len(features["input_ids"])
    for begin in tqdm(range(0, n, batch_size), desc=desc, leave=False):
        batch = {name: torch.as_tensor(features[name][begin:begin + batch_size], device=device) for name in names}
        out = model(**batch)
        starts.append(out.start_logits.float().cpu().numpy())
        ends.append(out.end_logits.float().cpu().numpy())
    return np.concatenate(starts), np.concatenate(ends)


def evaluate_qa(model, tokenizer, examples, max_seq_len: int, doc_stride: int, max_query_len: int,
                batch_size: int = 32) -> dict:
    """SQuAD v1.1 EM / F1 (percent) of `model` on `examples`."""
    features = prepare_features(tokenizer, examples, max_seq_len, doc_stride, max_query_len)
    start_logits, end_logits = predict_logits(model, features, batch_size, desc="evaluate")
    predictions = decode_answers(examples, features, start_logits, end_logits)
    return squad_scores(examples, predictions)


def _load_trainable_qa_model(path, seed: int):
    """A *ForQuestionAnswering from any checkpoint; a fresh qa_outputs head where it has none (intended here)."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering, set_seed

    from pocketbert.errors import PocketbertError

    if not (Path(path) / "config.json").is_file():
        raise PocketbertError(f"model '{path}' is not a checkpoint directory with config.json; pass one (e.g. from `pocketbert distill init`)")
    set_seed(seed)  # the fresh head's initialisation is part of the seeded run
    config = AutoConfig.from_pretrained(str(path))
    model, info = AutoModelForQuestionAnswering.from_pretrained(str(path), output_loading_info=True)
    fresh_head = any(key.startswith("qa_outputs") for key in info.get("missing_keys", ()))
    return model, config.model_type, fresh_head


def train_qa(model_path, train_path, dev_path, out, config, teacher_path=None, max_seq_len=MAX_SEQ_LEN,
             doc_stride=DOC_STRIDE, max_query_len=MAX_QUERY_LEN, temperature=2.0, alpha_ce=0.5, alpha_task=0.5,
             max_train_examples=None, max_dev_examples=None) -> dict:
    """`pocketbert finetune qa` (teacher_path None) and `pocketbert distill qa`: train, save, score on dev."""
    from pocketbert.distill.trainer import QATrainer, build_trainer, prepare_run_dir, train_and_save
    from pocketbert.errors import PocketbertError
    from pocketbert.modeling import load_qa_model, load_tokenizer

    tokenizer = load_tokenizer(model_path)
    train_examples, dataset = load_training_features(train_path, tokenizer, max_seq_len, doc_stride, max_query_len,
                                                     max_train_examples)
    dev_examples = load_squad(dev_path)[:max_dev_examples]
    teacher = None
    if teacher_path is not None:
        teacher = load_qa_model(teacher_path).model
        if load_tokenizer(teacher_path).get_vocab() != tokenizer.get_vocab():
            raise PocketbertError(f"teacher '{teacher_path}' and student '{model_path}' use different vocabularies; "
                                  "build the student with `pocketbert distill init` from the teacher")
    out = prepare_run_dir(out, config)
    model, model_type, fresh_head = _load_trainable_qa_model(model_path, config.seed)
    use_ce = teacher is not None and alpha_ce > 0
    loss_terms = {"ce (KL start/end, *T^2)": alpha_ce if use_ce else 0.0, "task (CE vs gold spans)": alpha_task}
    notes = ["loss terms: " + ", ".join(f"{name} x{alpha}" for name, alpha in loss_terms.items() if alpha > 0)]
    if fresh_head:
        notes.append(f"'{model_path}' has no QA head: a fresh qa_outputs layer is trained")
    if teacher is not None and uses_token_type_ids(teacher) and not uses_token_type_ids(model):
        notes.append("the teacher reads token_type_ids; the student does not")
    trainer = build_trainer(QATrainer, model, dataset, out, config, teacher=teacher, temperature=temperature,
                            alpha_ce=alpha_ce if use_ce else 0.0, alpha_task=alpha_task)
    run_info = {
        "command": "distill qa" if teacher is not None else "finetune qa",
        "model": str(model_path), "model_type": model_type, "teacher": str(teacher_path) if teacher_path else None,
        "train": str(train_path), "dev": str(dev_path),
        "train_examples": len(train_examples), "train_features": len(dataset), "dev_examples": len(dev_examples),
        "features": {"max_seq_len": max_seq_len, "doc_stride": doc_stride, "max_query_len": max_query_len},
        "temperature": temperature, "loss_terms": loss_terms, "fresh_qa_head": fresh_head, "notes": notes,
    }
    return train_and_save(trainer, out, config, tokenizer, run_info,
                          evaluate=lambda m: evaluate_qa(m, tokenizer, dev_examples, max_seq_len, doc_stride, max_query_len))
