"""MLM distillation (`distill mlm`) and fitting an MLM head on a frozen teacher (`distill fit-mlm-head`)."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, BertForMaskedLM, set_seed

from pocketbert.distill.masking import DynamicMasker, count_tokens, token_mask_weights
from pocketbert.distill.trainer import (
    MaskingCollator,
    MLMDistillationTrainer,
    RunTrainer,
    build_trainer,
    load_pretrained,
    prepare_run_dir,
    train_and_save,
)
from pocketbert.errors import PocketbertError
from pocketbert.modeling import load_tokenizer

MLM_SEQ_LEN = 128
FIT_HEAD_HINT = "pocketbert distill fit-mlm-head --teacher T --text FILE --out DIR"


class TextWindowDataset(torch.utils.data.Dataset):
    """A text file's paragraphs (blank-line or line separated) as [CLS] ... [SEP] windows of <= seq_len tokens."""

    def __init__(self, path, tokenizer, seq_len: int = MLM_SEQ_LEN):
        path = Path(path)
        if not path.is_file():
            raise PocketbertError(f"text file '{path}' does not exist; pass a UTF-8 text file, one paragraph per line")
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise PocketbertError(f"text file '{path}' is empty; pass a file with text in it")
        body = seq_len - 2
        self.windows = []
        for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]:
            for begin in range(0, len(ids), body):
                self.windows.append([tokenizer.cls_token_id, *ids[begin:begin + body], tokenizer.sep_token_id])
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        ids = self.windows[index]  # unpadded: the collator pads the batch
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), dtype=torch.long)}


def _collator(dataset: TextWindowDataset, tokenizer, smoothing: float, config) -> MaskingCollator:
    counts = count_tokens(dataset.windows, len(tokenizer))
    masker = DynamicMasker.for_tokenizer(tokenizer, token_mask_weights(counts, smoothing))
    return MaskingCollator(masker, tokenizer.pad_token_id, None if config.dynamic_padding else dataset.seq_len)


def _load_mlm_teacher(path):
    if load_pretrained(AutoConfig, path, "teacher").model_type != "bert":
        raise PocketbertError(f"teacher '{path}' is not a BERT checkpoint; MLM distillation expects a BERT teacher")
    model, info = load_pretrained(AutoModelForMaskedLM, path, "teacher", output_loading_info=True)
    has_head = not any(key.startswith("cls.") for key in info.get("missing_keys", ()))
    return model.eval(), has_head


def distill_mlm(teacher_path, student_path, text_path, out, config, temperature=2.0, alpha_ce=5.0, alpha_mlm=2.0,
                alpha_cos=1.0, seq_len=MLM_SEQ_LEN, smoothing=0.7) -> dict:
    """`pocketbert distill mlm`: train the student on `text_path` with a_ce*L_ce + a_mlm*L_mlm + a_cos*L_cos against
    the teacher; L_ce is dropped (and noted) when the teacher has no MLM head. Returns run.json's contents."""
    tokenizer = load_tokenizer(student_path)
    if load_tokenizer(teacher_path).get_vocab() != tokenizer.get_vocab():
        raise PocketbertError("teacher and student use different vocabularies; build the student with `pocketbert distill init`")
    teacher, teacher_has_head = _load_mlm_teacher(teacher_path)
    notes = []
    if alpha_ce > 0 and not teacher_has_head:
        alpha_ce = 0.0
        notes.append(f"L_ce disabled: teacher has no MLM head; fit one with `{FIT_HEAD_HINT}`")
    alphas = {"ce": alpha_ce, "mlm": alpha_mlm, "cos": alpha_cos}
    notes.insert(0, "loss terms: " + (", ".join(f"L_{n} x{a}" for n, a in alphas.items() if a > 0) or "none"))
    dataset = TextWindowDataset(text_path, tokenizer, seq_len)
    set_seed(config.seed)
    student = load_pretrained(AutoModelForMaskedLM, student_path, "student")
    out = prepare_run_dir(out, config)
    trainer = build_trainer(MLMDistillationTrainer, student, dataset, out, config,
                            collator=_collator(dataset, tokenizer, smoothing, config),
                            teacher=teacher, temperature=temperature, alphas=alphas)
    run_info = {"command": "distill mlm", "teacher": str(teacher_path), "student": str(student_path),
                "text": str(text_path), "windows": len(dataset), "seq_len": seq_len, "temperature": temperature,
                "mask": {"fraction": 0.15, "mask_keep_random": [0.8, 0.1, 0.1], "count_smoothing": smoothing},
                "loss_terms": alphas, "teacher_has_mlm_head": teacher_has_head, "notes": notes}
    return train_and_save(trainer, out, config, tokenizer, run_info)


def fit_mlm_head(teacher_path, text_path, out, config, seq_len=MLM_SEQ_LEN, smoothing=0.7) -> dict:
    """Train only a BertForMaskedLM head on the frozen teacher encoder.

    The decoder stays tied to the (frozen) word embeddings, as in BERT pre-training: only the transform
    (dense + LayerNorm) and the output bias learn, so a few minutes of text are enough and the teacher's
    representations are untouched.
    """
    tokenizer = load_tokenizer(teacher_path)
    _load_mlm_teacher(teacher_path)  # validates the checkpoint
    dataset = TextWindowDataset(text_path, tokenizer, seq_len)
    set_seed(config.seed)
    model = load_pretrained(BertForMaskedLM, teacher_path, "teacher")
    out = prepare_run_dir(out, config)
    for param in model.bert.parameters():
        param.requires_grad = False
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    trainer = build_trainer(RunTrainer, model, dataset, out, config, collator=_collator(dataset, tokenizer, smoothing, config))
    run_info = {"command": "distill fit-mlm-head", "teacher": str(teacher_path), "text": str(text_path),
                "windows": len(dataset), "seq_len": seq_len, "trainable_parameters": trainable,
                "decoder": "tied to the frozen word embeddings", "loss_terms": {"mlm": 1.0},
                "notes": [f"training the MLM head only ({sum(model.get_parameter(n).numel() for n in trainable):,} parameters)"]}
    return train_and_save(trainer, out, config, tokenizer, run_info)
