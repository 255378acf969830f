"""Training runs on the Hugging Face Trainer: it does devices, mixed precision, accumulation, checkpoints
and `accelerate launch` / `torchrun`; this module holds only what is DistilBERT (the losses, the teacher,
the masking) and the run folder contract:

    DIR/checkpoints/checkpoint-N   every --save-steps (last 2 kept); --resume continues from the newest
    DIR/metrics.jsonl              one JSON object per logging step
    DIR/model.safetensors, config.json, tokenizer files   the final model (moved in from a temp folder)
    DIR/loss.png                   the loss and each of its terms against the step
    DIR/run.json                   written last: resolved config, loss terms, versions, dev EM/F1
"""
from __future__ import annotations

import collections
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_write_text, write_json
from pocketbert.manifest import tool_versions
from pocketbert.modeling import uses_token_type_ids
from pocketbert.distill.losses import (hidden_cosine_loss, masked_lm_loss, mlm_distillation_loss,
                                       qa_distillation_loss, soft_target_kl)

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainConfig:
    epochs: float = 2.0
    batch_size: int = 16
    lr: float = 5e-5
    grad_accum: int = 1
    seed: int = 42
    save_steps: int = 500
    max_steps: int = -1
    warmup: float = 0.1  # a fraction of all steps
    weight_decay: float = 0.01
    logging_steps: int = 10
    resume: bool = False
    force: bool = False
    callbacks: list = field(default_factory=list, repr=False)


class JsonlMetricsCallback(TrainerCallback):
    """Append every log record (loss, its terms, lr, epoch) to DIR/metrics.jsonl as one JSON line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class _LossTermsTrainer(Trainer):
    """Adds the running mean of each loss term (loss_ce, loss_mlm, ...) to the Trainer's log records."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._term_sums = collections.defaultdict(float)
        self._term_counts = collections.defaultdict(int)

    def _record(self, terms: dict):
        for name, value in terms.items():
            self._term_sums[name] += float(value)
            self._term_counts[name] += 1

    def log(self, logs, start_time=None):
        if "loss" in logs:
            for name, total in self._term_sums.items():
                logs[f"loss_{name}"] = round(total / self._term_counts[name], 6)
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, start_time)


class QATrainer(_LossTermsTrainer):
    """QA fine-tuning (no teacher) or QA distillation (teacher logits computed on the fly, no grad)."""

    def __init__(self, *args, teacher=None, temperature=2.0, alpha_ce=0.5, alpha_task=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        self.temperature, self.alpha_ce, self.alpha_task = temperature, alpha_ce, alpha_task

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        start_positions, end_positions = inputs.pop("start_positions"), inputs.pop("end_positions")
        token_type_ids = inputs.pop("token_type_ids", None)
        student_inputs = dict(inputs, token_type_ids=token_type_ids) if uses_token_type_ids(_unwrap(model)) else inputs
        outputs = model(**student_inputs)
        teacher_start = teacher_end = None
        if self.teacher is not None and self.alpha_ce > 0:
            teacher_inputs = dict(inputs, token_type_ids=token_type_ids) if uses_token_type_ids(self.teacher) else inputs
            with torch.no_grad():
                teacher_out = self.teacher(**teacher_inputs)
            teacher_start, teacher_end = teacher_out.start_logits, teacher_out.end_logits
        loss, terms = qa_distillation_loss(outputs.start_logits, outputs.end_logits, teacher_start, teacher_end,
                                           start_positions, end_positions, self.temperature,
                                           self.alpha_ce if teacher_start is not None else 0.0, self.alpha_task)
        self._record(terms)
        return (loss, outputs) if return_outputs else loss


class MLMDistillationTrainer(_LossTermsTrainer):
    """L = a_ce * L_ce + a_mlm * L_mlm + a_cos * L_cos; batches arrive already masked by the collator."""

    def __init__(self, *args, teacher=None, temperature=2.0, alphas=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        self.temperature = temperature
        self.alphas = {name: value for name, value in alphas.items() if value > 0}
        if not self.alphas:
            raise PocketbertError("every loss weight is 0; set at least one of --alpha-ce, --alpha-mlm, --alpha-cos > 0")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, attention_mask = inputs["labels"], inputs["attention_mask"]
        want_hidden = "cos" in self.alphas
        outputs = model(input_ids=inputs["input_ids"], attention_mask=attention_mask, output_hidden_states=want_hidden)
        teacher_out = None
        if "ce" in self.alphas or want_hidden:
            with torch.no_grad():
                teacher_out = self.teacher(input_ids=inputs["input_ids"], attention_mask=attention_mask,
                                           output_hidden_states=want_hidden)
        terms = {}
        real = attention_mask.bool()
        if "ce" in self.alphas:
            terms["ce"] = soft_target_kl(outputs.logits[real], teacher_out.logits[real], self.temperature)
        if "mlm" in self.alphas:
            terms["mlm"] = masked_lm_loss(outputs.logits, labels)
        if want_hidden:
            terms["cos"] = hidden_cosine_loss(outputs.hidden_states[-1], teacher_out.hidden_states[-1], attention_mask)
        loss = mlm_distillation_loss(terms, self.alphas)
        self._record({name: value.detach() for name, value in terms.items()})
        return (loss, outputs) if return_outputs else loss


class MaskingCollator:
    """Stack token windows and mask them afresh every time a batch is drawn (dynamic masking)."""

    def __init__(self, masker):
        self.masker = masker

    def __call__(self, rows: list[dict]) -> dict:
        input_ids = torch.stack([row["input_ids"] for row in rows])
        attention_mask = torch.stack([row["attention_mask"] for row in rows])
        masked, labels = self.masker(input_ids, attention_mask)
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


def _unwrap(model):
    return getattr(model, "module", model)  # DDP wraps the model


def prepare_run_dir(out: str | Path, config: TrainConfig) -> Path:
    """Refuse to clobber a finished run or silently restart an interrupted one."""
    out = Path(out)
    if out.exists() and config.force and not config.resume:
        # --force deletes only what a training run wrote, never an unrelated folder passed by mistake.
        if any(out.iterdir()) and not any((out / name).exists() for name in (CHECKPOINTS, METRICS_FILE, RUN_FILE)):
            raise PocketbertError(f"'{out}' is not empty and not a training run folder; choose another --out")
        shutil.rmtree(out)
    if (out / RUN_FILE).exists():
        raise PocketbertError(f"'{out}' holds a finished run ({RUN_FILE} exists); pass --force to train again from scratch")
    if not config.resume and get_last_checkpoint_or_none(out) is not None:
        raise PocketbertError(f"'{out}' holds checkpoints of an interrupted run; pass --resume to continue it or --force to start over")
    if out.exists() and not config.resume and any(out.iterdir()):
        raise PocketbertError(f"output '{out}' already exists and is not empty; pass --force to overwrite it")
    (out / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    return out


def get_last_checkpoint_or_none(out: Path):
    folder = Path(out) / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def training_arguments(out: Path, config: TrainConfig) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(out / CHECKPOINTS), num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr, warmup_steps=config.warmup, weight_decay=config.weight_decay,
        lr_scheduler_type="linear", seed=config.seed, data_seed=config.seed,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=2,
        logging_strategy="steps", logging_steps=config.logging_steps, report_to="none",
        bf16=bf16, fp16=cuda and not bf16, remove_unused_columns=False, dataloader_num_workers=0, dataloader_pin_memory=cuda,
        eval_strategy="no", disable_tqdm=False,
    )


def train_and_save(trainer: Trainer, out: Path, config: TrainConfig, tokenizer, run_info: dict, evaluate=None) -> dict:
    """Train (resuming if asked), save the final model atomically, evaluate, write run.json last."""
    last = get_last_checkpoint_or_none(out) if config.resume else None
    if config.resume and last is None:
        print(f"no checkpoint in {out / CHECKPOINTS}; starting from step 0")
        _drop_metrics_after(out / METRICS_FILE, 0)
    elif last:
        print(f"resuming from {last}")
        _drop_metrics_after(out / METRICS_FILE, int(Path(last).name.rsplit("-", 1)[1]))
    for line in run_info.get("notes", ()):
        print(line)
    result = trainer.train(resume_from_checkpoint=last)
    if not trainer.is_world_process_zero():
        return {}
    model = _unwrap(trainer.model)
    tmp = out / f".final-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for file in tmp.iterdir():
        os.replace(file, out / file.name)
    tmp.rmdir()
    scores = evaluate(model) if evaluate else None
    plot_losses(out / METRICS_FILE, out / LOSS_PLOT, title=run_info.get("command", "training"))
    run = {
        **run_info,
        "train_config": {k: v for k, v in asdict(config).items() if k != "callbacks"},
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "final_dev": scores,
        "device": str(trainer.args.device),
        "tool_versions": tool_versions(),
    }
    write_json(out / RUN_FILE, run)
    return run


def _drop_metrics_after(metrics_path: Path, step: int) -> None:
    """The steps after the checkpoint are trained again: forget their old records."""
    if metrics_path.is_file():
        lines = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        atomic_write_text(metrics_path, "".join(line + "\n" for line in lines))


def plot_losses(metrics_path: Path, png_path: Path, title: str) -> None:
    """The total loss and each term (loss_ce, loss_task, ...) against the optimiser step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    records = [r for r in records if "loss" in r]
    if not records:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ["loss", *sorted({k for r in records for k in r if k.startswith("loss_")})]:
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points), label=key, marker="." if len(points) < 30 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = png_path.parent / f".{png_path.name}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def build_trainer(trainer_class, model, dataset, out: Path, config: TrainConfig, collator=None, **extra) -> Trainer:
    callbacks = [JsonlMetricsCallback(out / METRICS_FILE), *config.callbacks]
    return trainer_class(model=model, args=training_arguments(out, config), train_dataset=dataset,
                         data_collator=collator, callbacks=callbacks, **extra)
