"""Text classification on the same Trainer as QA: `pocketbert finetune classify` (gold labels only) and
`pocketbert distill classify` (L = a_ce·KL(teacher‖student at T)·T² + a_cls·CE against the gold labels).

One example is one text cut to --max-seq-len tokens ([CLS] text [SEP]); the model is any *ForSequenceClassification
whose config carries id2label / label2id from the data's label list. Dev accuracy and macro-F1 land in run.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, set_seed

from pocketbert.classification import classification_scores
from pocketbert.data.labelled_text import ClassifyData
from pocketbert.distill.losses import classification_distillation_loss
from pocketbert.distill.trainer import PaddingCollator, RunTrainer, build_trainer, load_pretrained, prepare_run_dir, train_and_save
from pocketbert.errors import PocketbertError
from pocketbert.modeling import fresh_head_keys, load_classifier_model, load_tokenizer, max_sequence_length
from pocketbert.options import above, at_least, check_options

TEXT_FIELDS = ("input_ids", "attention_mask")
CLASSIFY_STACKED = ("labels", "example_index")  # per-text scalars the collator stacks
DEFAULT_MAX_SEQ_LEN = 256


@dataclass(frozen=True)
class ClassifyLoss:
    """L = alpha_ce·KL(teacher at T ‖ student at T)·T² + alpha_cls·CE(gold label). Without a teacher only the
    gold-label term trains."""

    teacher: str | Path | None = None
    temperature: float = 2.0
    alpha_ce: float = 0.5
    alpha_cls: float = 0.5


FINE_TUNING = ClassifyLoss(alpha_ce=0.0, alpha_cls=1.0)  # no teacher: the gold-label cross-entropy is the whole loss


def check_classify_options(max_seq_len: int | None = None, loss: ClassifyLoss | None = None) -> None:
    """One line naming every classification option out of range, before any data or model is read."""
    problems = [at_least("--max-seq-len", max_seq_len, 8)]
    if loss is not None:
        problems += [above("--temperature", loss.temperature, 0), at_least("--alpha-ce", loss.alpha_ce, 0),
                     at_least("--alpha-cls", loss.alpha_cls, 0)]
    check_options(*problems)
    if loss is not None and loss.teacher is not None and loss.alpha_ce == 0 and loss.alpha_cls == 0:
        raise PocketbertError("--alpha-ce and --alpha-cls are both 0, so nothing would train; set one of them above 0")


class ClassifyDataset(torch.utils.data.Dataset):
    """Each text's real tokens, its label id, and its index (the key of the teacher-logit cache)."""

    def __init__(self, encodings: dict, label_ids: list[int]):
        self.rows = [{"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                      "labels": torch.tensor(label), "example_index": torch.tensor(i)}
                     for i, (ids, mask, label) in enumerate(zip(encodings["input_ids"], encodings["attention_mask"],
                                                                label_ids))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def encode(tokenizer, texts: list[str], max_seq_len: int) -> dict:
    """Token ids and attention masks of each text, cut to `max_seq_len` tokens and unpadded (the collator pads)."""
    return tokenizer(texts, truncation=True, max_length=max_seq_len, return_token_type_ids=False)


class ClassifyTrainer(RunTrainer):
    """Fine-tuning (no teacher) or distillation (the teacher's logits without grad, cached per example: the
    teacher is frozen and in eval mode, so an example's logits never change)."""

    loss_is_scaled_for_ga = False  # a batch mean: the Trainer divides it by the accumulation steps

    def __init__(self, *args, teacher=None, temperature=2.0, alpha_ce=0.5, alpha_cls=0.5, cache_teacher=True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        self.temperature, self.alpha_cls = temperature, alpha_cls
        self.alpha_ce = alpha_ce if teacher is not None else 0.0
        self.teacher_cache = {} if cache_teacher else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """`classification_distillation_loss` on the student's logits; the terms are recorded for the log."""
        labels, example_index = inputs["labels"], inputs["example_index"]
        text = {name: inputs[name] for name in TEXT_FIELDS}
        outputs = model(**text)
        teacher_logits = self._teacher_logits(text, example_index) if self.alpha_ce > 0 else None
        loss, terms = classification_distillation_loss(outputs.logits.float(), teacher_logits, labels,
                                                       self.temperature, self.alpha_ce, self.alpha_cls)
        self._record(terms)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _teacher_logits(self, text: dict, example_index: torch.Tensor) -> torch.Tensor:
        keys = example_index.tolist()
        if self.teacher_cache is None or any(key not in self.teacher_cache for key in keys):
            logits = self.teacher(**text).logits.float()
            if self.teacher_cache is None:
                return logits
            for row, key in enumerate(keys):
                self.teacher_cache[key] = logits[row].cpu()
        return torch.stack([self.teacher_cache[key] for key in keys]).to(text["input_ids"].device)


@torch.no_grad()
def predict_labels(model, tokenizer, texts: list[str], max_seq_len: int, batch_size: int = 32,
                   desc: str = "evaluate") -> list[int]:
    """The arg-max label id of each text; texts batched by length so that little padding is computed."""
    model.eval()
    device = next(model.parameters()).device
    encodings = encode(tokenizer, texts, max_seq_len)
    order = sorted(range(len(texts)), key=lambda i: len(encodings["input_ids"][i]))
    collate = PaddingCollator(TEXT_FIELDS, CLASSIFY_STACKED, tokenizer.pad_token_id)
    predicted = [0] * len(texts)
    for begin in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        chunk = order[begin:begin + batch_size]
        rows = [{"input_ids": torch.tensor(encodings["input_ids"][i]),
                 "attention_mask": torch.tensor(encodings["attention_mask"][i]),
                 "labels": torch.tensor(0), "example_index": torch.tensor(i)} for i in chunk]
        batch = collate(rows)
        logits = model(**{name: batch[name].to(device) for name in TEXT_FIELDS}).logits
        for i, label in zip(chunk, logits.argmax(-1).tolist()):
            predicted[i] = label
    return predicted


def evaluate_classifier(model, tokenizer, texts: list[str], label_ids: list[int], labels: list[str],
                        max_seq_len: int, batch_size: int = 32) -> dict:
    """Dev accuracy and macro-F1 (percent) of `model`."""
    return classification_scores(label_ids, predict_labels(model, tokenizer, texts, max_seq_len, batch_size), labels)


def checkpoint_labels(config) -> list[str] | None:
    """The label names a checkpoint already classifies into, in id order; None when it is no classifier yet."""
    if not any(name.endswith("ForSequenceClassification") for name in (config.architectures or ())):
        return None
    return [config.id2label[i] for i in range(len(config.id2label))]


def _load_trainable_classifier(path, labels: list[str], seed: int):
    """A *ForSequenceClassification over `labels` from any checkpoint: a fresh head where it has none (intended
    here); a classifier trained on other labels is refused rather than silently relabelled."""
    set_seed(seed)  # the fresh head's initialisation is part of the seeded run
    config = load_pretrained(AutoConfig, path, "model")
    existing = checkpoint_labels(config)
    if existing is not None and existing != labels:
        raise PocketbertError(f"'{path}' is already a classifier for the labels {existing}, but the data's labels are "
                              f"{labels}; start from the checkpoint it was trained from, or pass data (or --labels) "
                              "with its labels in that order")
    model, info = load_pretrained(AutoModelForSequenceClassification, path, "model", output_loading_info=True,
                                  num_labels=len(labels), id2label=dict(enumerate(labels)),
                                  label2id={name: i for i, name in enumerate(labels)},
                                  problem_type="single_label_classification")
    return model, config.model_type, bool(fresh_head_keys(model, info))


def train_classifier(model_path, data: ClassifyData, out, config, loss: ClassifyLoss = FINE_TUNING,
                     max_seq_len: int = DEFAULT_MAX_SEQ_LEN) -> dict:
    """`pocketbert finetune classify` (no teacher) and `pocketbert distill classify`: train, save, score on dev."""
    config.checked()
    check_classify_options(max_seq_len, loss)
    if config.eval_steps:
        raise PocketbertError("scoring dev during training (eval_steps) is QA-only for now; set eval_steps to 0: "
                              "classification scores dev once, at the end")
    tokenizer = load_tokenizer(model_path)
    teacher = None
    if loss.teacher is not None:
        teacher = load_classifier_model(loss.teacher).model
        teacher_labels = checkpoint_labels(teacher.config) or []
        if teacher_labels != data.labels:
            raise PocketbertError(f"teacher '{loss.teacher}' predicts the labels {teacher_labels}, but the data's labels "
                                  f"({data.labels_source}) are {data.labels}; pass the data (or --labels) the teacher "
                                  "was fine-tuned with")
        if load_tokenizer(loss.teacher).get_vocab() != tokenizer.get_vocab():
            raise PocketbertError(f"teacher '{loss.teacher}' and student '{model_path}' use different vocabularies; "
                                  "build the student with `pocketbert distill init` from the teacher")
    # Loaded before the run folder exists: a damaged checkpoint leaves nothing behind that blocks the rerun.
    model, model_type, fresh_head = _load_trainable_classifier(model_path, data.labels, config.seed)
    longest = min(max_sequence_length(m.config) for m in (model, teacher) if m is not None)
    if max_seq_len > longest:
        raise PocketbertError(f"--max-seq-len {max_seq_len} is longer than the model's {longest} positions; "
                              f"pass --max-seq-len {longest} or less")
    train_encodings = encode(tokenizer, data.train.texts, max_seq_len)
    dataset = ClassifyDataset(train_encodings, data.label_ids(data.train))
    dev_ids = data.label_ids(data.dev)
    out = prepare_run_dir(out, config)
    alpha_ce = loss.alpha_ce if teacher is not None else 0.0
    loss_terms = {"ce (KL to the teacher's labels, *T^2)": alpha_ce, "cls (CE vs gold labels)": loss.alpha_cls}
    at_limit = sum(len(ids) >= max_seq_len for ids in train_encodings["input_ids"])
    notes = ["loss terms: " + ", ".join(f"{name} x{alpha}" for name, alpha in loss_terms.items() if alpha > 0),
             f"{at_limit} of {len(dataset)} training texts reach --max-seq-len {max_seq_len} (cut there)"]
    if fresh_head:
        notes.append(f"'{model_path}' has no classification head: a fresh one for {len(data.labels)} labels is trained")
    collator = PaddingCollator(TEXT_FIELDS, CLASSIFY_STACKED, tokenizer.pad_token_id,
                               None if config.dynamic_padding else max_seq_len)
    trainer = build_trainer(ClassifyTrainer, model, dataset, out, config, collator=collator, teacher=teacher,
                            temperature=loss.temperature, alpha_ce=alpha_ce, alpha_cls=loss.alpha_cls,
                            cache_teacher=config.teacher_cache)
    run_info = {
        "command": "distill classify" if teacher is not None else "finetune classify",
        "task": "text-classification",
        "model": str(model_path), "model_type": model_type, "teacher": str(loss.teacher) if teacher is not None else None,
        "train": str(data.train.path), "dev": str(data.dev.path), "labels": data.labels,
        "labels_from": data.labels_source, "train_examples": len(dataset), "dev_examples": len(dev_ids),
        "train_label_counts": {name: data.train.labels.count(name) for name in data.labels},
        "features": {"max_seq_len": max_seq_len, "train_texts_at_max_seq_len": at_limit},
        "temperature": loss.temperature, "loss_terms": loss_terms, "fresh_classifier_head": fresh_head, "notes": notes,
    }
    return train_and_save(trainer, out, config, tokenizer, run_info,
                          evaluate=lambda m: evaluate_classifier(m, tokenizer, data.dev.texts, dev_ids, data.labels,
                                                                 max_seq_len))
