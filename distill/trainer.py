"""Training runs on the Hugging Face Trainer: it does devices, mixed precision, accumulation, checkpoints
and `accelerate launch` / `torchrun`; this module holds only what is DistilBERT (the losses, the teacher,
the masking) and the run folder contract:

    DIR/checkpoints/checkpoint-N   every --save-steps (last 2 kept); --resume continues from the newest
    DIR/metrics.jsonl              one JSON object per logging step
    DIR/model.safetensors, config.json, tokenizer files   the final model (moved in from a temp folder)
    DIR/loss.png                   the loss and each of its terms against the step
    DIR/run.json                   written last: resolved config, loss terms, throughput, versions, dev EM/F1

Under `torchrun` / `accelerate launch` (CPU: gloo, GPU: nccl) every process trains on its own shard of the
batches; only the main process prepares the folder, logs, saves and scores.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import struct
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import safe_globals
from transformers.trainer_utils import get_last_checkpoint

from pocketbert.distill.losses import hidden_cosine_loss, masked_lm_loss, mlm_distillation_loss, qa_distillation_loss, soft_target_kl
from pocketbert.errors import KeptOnInterrupt, PocketbertError, first_line
from pocketbert.fsutil import atomic_write_text, check_output_path, read_json, write_json
from pocketbert.manifest import tool_versions
from pocketbert.modeling import quiet_load_report, uses_token_type_ids
from pocketbert.options import above, at_least, between, check_options

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
CHECKPOINTS = "checkpoints"
# Start/end logit on padding: far below any real logit, yet finite so that 0 * log p stays 0 in the KL.
PADDING_LOGIT = -1e4


@dataclass
class TrainConfig:
    """The training options every distill/finetune command shares; `checked()` refuses values out of range, and the
    resolved values go to run.json."""

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
    # Each batch padded to its longest window, batches drawn from windows of similar length; False pads every
    # window to the maximum length (the slower original trainer, kept for the throughput benchmark).
    dynamic_padding: bool = True
    # QA distillation: the teacher's logits for a window computed once and reused in later epochs.
    teacher_cache: bool = True
    # Score the dev set every N optimiser steps (0: only once, at the end): the curve shows where training saturates.
    eval_steps: int = 0
    callbacks: list = field(default_factory=list, repr=False)

    def checked(self) -> TrainConfig:
        """This config, or one line naming every option out of range (before any model is loaded or folder made)."""
        steps = None
        if self.max_steps is not None and self.max_steps != -1 and self.max_steps < 1:
            steps = f"--max-steps {self.max_steps} (must be at least 1, or -1 to train for --epochs)"
        check_options(steps, above("--epochs", self.epochs, 0) if self.max_steps in (None, -1) else None,
                      at_least("--batch-size", self.batch_size, 1), at_least("--grad-accum", self.grad_accum, 1),
                      above("--lr", self.lr, 0), between("--warmup", self.warmup, 0, 1, high_open=True),
                      at_least("--seed", self.seed, 0), at_least("--save-steps", self.save_steps, 1),
                      at_least("--logging-steps", self.logging_steps, 1), at_least("--eval-steps", self.eval_steps, 0),
                      at_least("weight decay", self.weight_decay, 0))
        return self


class JsonlMetricsCallback(TrainerCallback):
    """Append every log record (loss, its terms, lr, epoch) to DIR/metrics.jsonl as one JSON line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Append this log record, stamped with its step; the main process alone writes, so lines never interleave."""
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class DevScoreCallback(TrainerCallback):
    """Every `every` steps, score the model on the dev set and append {"step", "dev_em", "dev_f1"} to
    metrics.jsonl (the last step is left to the final evaluation, which is recorded the same way)."""

    def __init__(self, evaluate, every: int, path: Path):
        self.evaluate, self.every, self.path = evaluate, every, Path(path)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Score dev on the main process every `every` steps, then put the model back in training mode."""
        if state.is_world_process_zero and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            record_dev_scores(self.path, state.global_step, self.evaluate(model))
            model.train()


def record_dev_scores(path: Path, step: int, scores: dict) -> None:
    """Append {"step", "dev_em", "dev_f1"} to metrics.jsonl: the points of the dev F1 curve in loss.png."""
    with open(path, "a") as handle:
        handle.write(json.dumps({"step": step, "dev_em": scores["exact_match"], "dev_f1": scores["f1"]}) + "\n")


LOSS_TOTAL_FILE = "loss_total.json"


class RunTrainer(Trainer):
    """The Trainer plus what a run folder records: the running mean of each loss term (loss_ce, loss_mlm, ...)
    in the log records, the windows trained (for windows/s), and the loss summed over every step so far, kept
    in each checkpoint so that `train_loss` after --resume covers the whole run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._term_sums = collections.defaultdict(float)
        self._term_counts = collections.defaultdict(int)
        self.windows_trained = 0  # by this process, in this call of train()
        self.loss_before_resume = {"step": 0, "loss_sum": 0.0}

    def _record(self, terms: dict):
        for name, value in terms.items():
            self._term_sums[name] += float(value)
            self._term_counts[name] += 1

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step, counting the batch's windows for the windows/s in run.json."""
        self.windows_trained += len(inputs["input_ids"])
        return super().training_step(model, inputs, num_items_in_batch)

    def loss_sum_so_far(self) -> float:
        """The training loss summed over every step of the run, those before a --resume included."""
        return self.loss_before_resume["loss_sum"] + self._total_loss_scalar + float(self._tr_loss)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            write_json(folder / LOSS_TOTAL_FILE, {"step": self.state.global_step, "loss_sum": self.loss_sum_so_far()})

    def log(self, logs, start_time=None):
        """The Trainer's log; a record that carries the loss also gets each term's mean since the previous one."""
        if "loss" in logs:
            for name, total in self._term_sums.items():
                logs[f"loss_{name}"] = round(total / self._term_counts[name], 6)
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, start_time)


class QATrainer(RunTrainer):
    """QA fine-tuning (no teacher) or QA distillation (teacher outputs without grad, cached per window).

    Start/end logits on padding are pushed to -1e4 for student and teacher alike, so the loss of a window
    does not depend on how far its batch is padded (dynamic and fixed padding train the same model).
    """

    loss_is_scaled_for_ga = False  # a batch mean: the Trainer divides it by the accumulation steps

    def __init__(self, *args, teacher=None, temperature=2.0, alpha_ce=0.5, alpha_task=0.5, alpha_cos=0.0,
                 cache_teacher=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        self.temperature, self.alpha_ce, self.alpha_task = temperature, alpha_ce, alpha_task
        self.alpha_cos = alpha_cos if teacher is not None else 0.0
        # window index -> the teacher's outputs over the window's real tokens; the teacher is frozen and in
        # eval mode, so a window's outputs never change.
        self.teacher_cache = {} if cache_teacher else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """`qa_distillation_loss` on padding-masked start/end logits; the terms are recorded for the log."""
        inputs = dict(inputs)
        start_positions, end_positions = inputs.pop("start_positions"), inputs.pop("end_positions")
        window_index = inputs.pop("window_index")
        token_type_ids = inputs.pop("token_type_ids", None)
        student_inputs = dict(inputs, token_type_ids=token_type_ids) if uses_token_type_ids(_unwrap(model)) else inputs
        want_hidden = self.alpha_cos > 0
        outputs = model(**student_inputs, output_hidden_states=want_hidden)
        padding = ~inputs["attention_mask"].bool()
        student_start, student_end = (logits.masked_fill(padding, PADDING_LOGIT) for logits in
                                      (outputs.start_logits, outputs.end_logits))
        teacher_start = teacher_end = cosine = None
        if self.teacher is not None and (self.alpha_ce > 0 or want_hidden):
            teacher_inputs = dict(inputs, token_type_ids=token_type_ids) if uses_token_type_ids(self.teacher) else inputs
            teacher_start, teacher_end, *teacher_hidden = self._teacher_outputs(teacher_inputs, window_index, want_hidden)
            if want_hidden:
                cosine = hidden_cosine_loss(outputs.hidden_states[-1], teacher_hidden[0], inputs["attention_mask"])
        loss, terms = qa_distillation_loss(student_start, student_end, teacher_start, teacher_end,
                                           start_positions, end_positions, self.temperature,
                                           self.alpha_ce if teacher_start is not None else 0.0, self.alpha_task,
                                           cosine, self.alpha_cos)
        self._record(terms)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _teacher_outputs(self, inputs: dict, window_index: torch.Tensor, want_hidden: bool) -> list[torch.Tensor]:
        """The teacher's [batch, length] start and end logits (padding at PADDING_LOGIT) and, with `want_hidden`,
        its [batch, length, hidden] last hidden states (whatever sits on padding: the cosine term never reads it)."""
        mask = inputs["attention_mask"].bool()
        keys = window_index.tolist()
        if self.teacher_cache is None or any(key not in self.teacher_cache for key in keys):
            out = self.teacher(**inputs, output_hidden_states=want_hidden)
            outputs = [out.start_logits.float(), out.end_logits.float()]
            if want_hidden:
                outputs.append(out.hidden_states[-1].float())
            if self.teacher_cache is None:
                start, end, *hidden = outputs
                return [start.masked_fill(~mask, PADDING_LOGIT), end.masked_fill(~mask, PADDING_LOGIT), *hidden]
            for row, key in enumerate(keys):
                # Hidden states kept in fp16: the cache of 2,000 questions at width 384 stays near 0.3 GB.
                self.teacher_cache[key] = tuple(t[row][mask[row]].cpu().to(torch.float16 if t.dim() == 3 else t.dtype)
                                                for t in outputs)
        cached = [self.teacher_cache[key] for key in keys]
        batch = []
        for part, fill in zip(zip(*cached), (PADDING_LOGIT, PADDING_LOGIT, 0.0)):
            padded = torch.full((*mask.shape, *part[0].shape[1:]), fill, device=mask.device)
            for row, values in enumerate(part):
                padded[row, :len(values)] = values.to(mask.device, torch.float32)
            batch.append(padded)
        return batch


class MLMDistillationTrainer(RunTrainer):
    """L = a_ce * L_ce + a_mlm * L_mlm + a_cos * L_cos; batches arrive already masked by the collator."""

    loss_is_scaled_for_ga = False  # a batch mean (the batch has labels, so the Trainer would otherwise assume not)

    def __init__(self, *args, teacher=None, temperature=2.0, alphas=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        self.temperature = temperature
        self.alphas = {name: value for name, value in alphas.items() if value > 0}
        if not self.alphas:
            raise PocketbertError("every loss weight is 0; set at least one of --alpha-ce, --alpha-mlm, --alpha-cos > 0")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """`mlm_distillation_loss` of the terms whose alpha is above 0; the teacher runs only when a term needs it."""
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


def pad_windows(rows: list[dict], names, pad_to: int | None = None, pad_values: dict | None = None) -> dict:
    """Stack the 1-D tensors `names` of `rows`, right-padded to the longest row (or to `pad_to`)."""
    length = pad_to or max(len(row["input_ids"]) for row in rows)
    batch = {}
    for name in names:
        column = torch.full((len(rows), length), (pad_values or {}).get(name, 0), dtype=rows[0][name].dtype)
        for i, row in enumerate(rows):
            column[i, :len(row[name])] = row[name]
        batch[name] = column
    return batch


class PaddingCollator:
    """Right-pad the token fields `padded` of a batch to its longest row (`pad_to`: to a fixed length instead) and
    stack the per-row scalars `stacked` (labels, row indices): the QA and classification trainers' batches."""

    def __init__(self, padded: tuple[str, ...], stacked: tuple[str, ...], pad_id: int, pad_to: int | None = None):
        self.padded, self.stacked, self.pad_id, self.pad_to = padded, stacked, pad_id, pad_to

    def __call__(self, rows: list[dict]) -> dict:
        batch = pad_windows(rows, self.padded, self.pad_to, {"input_ids": self.pad_id})
        for name in self.stacked:
            batch[name] = torch.stack([row[name] for row in rows])
        return batch


class MaskingCollator:
    """Pad token windows into a batch and mask them afresh every time a batch is drawn (dynamic masking)."""

    def __init__(self, masker, pad_id: int, pad_to: int | None = None):
        self.masker, self.pad_id, self.pad_to = masker, pad_id, pad_to

    def __call__(self, rows: list[dict]) -> dict:
        batch = pad_windows(rows, ("input_ids", "attention_mask"), self.pad_to, {"input_ids": self.pad_id})
        masked, labels = self.masker(batch["input_ids"], batch["attention_mask"])
        return {"input_ids": masked, "attention_mask": batch["attention_mask"], "labels": labels}


def _unwrap(model):
    return getattr(model, "module", model)  # DDP wraps the model


def load_pretrained(loader, path, what: str, **kwargs):
    """`loader.from_pretrained(path)`, with a missing or damaged checkpoint as one line naming it."""
    if not (Path(path) / "config.json").is_file():
        raise PocketbertError(f"{what} '{path}' is not a checkpoint directory with config.json; pass one")
    try:
        with quiet_load_report():  # a teacher without an MLM head or pooler is expected, not news
            return loader.from_pretrained(str(path), **kwargs)
    except Exception as err:  # safetensors, json and transformers raise many types for damaged files
        raise PocketbertError(f"{what} '{path}' is damaged and cannot be loaded ({first_line(err)}); re-create it or pass an intact copy") from None


def process_state():
    """This process's place in the launch, initialising the process group under torchrun / accelerate launch.

    On CPU the Trainer joins a launch only when told it runs on CPU (`use_cpu`), so both ask for the same.
    """
    return PartialState(cpu=not torch.cuda.is_available())


def prepare_run_dir(out: str | Path, config: TrainConfig) -> Path:
    """Refuse to clobber a finished run or silently restart an interrupted one.

    In a multi-process launch the main process alone checks and creates the folder (two processes doing it
    race); every process then raises the same error, or none.
    """
    config.checked()
    state = process_state()
    verdict: list[str | None] = [None]  # the main process's refusal, broadcast so every process raises it
    if state.is_main_process:
        try:
            _check_and_create_run_dir(Path(out), config)
        except PocketbertError as err:
            verdict[0] = str(err)
    if state.num_processes > 1:
        torch.distributed.broadcast_object_list(verdict, src=0)
    if verdict[0]:
        raise PocketbertError(verdict[0])
    return Path(out)


def _check_and_create_run_dir(out: Path, config: TrainConfig) -> None:
    out = check_output_path(out)  # not '.' or a folder holding it (--force would delete the working folder), a file or a link
    if out.exists() and config.force and not config.resume:
        # --force deletes only what a training run wrote, never an unrelated folder passed by mistake.
        if any(out.iterdir()) and not any((out / name).exists() for name in (CHECKPOINTS, METRICS_FILE, RUN_FILE)):
            raise PocketbertError(f"'{out}' is not empty and not a training run folder; choose another --out")
        shutil.rmtree(out)
    if (out / RUN_FILE).exists():
        raise PocketbertError(f"'{out}' holds a finished run ({RUN_FILE} exists); pass --force to train again from scratch")
    if not config.resume and get_last_checkpoint_or_none(out) is not None:
        raise PocketbertError(f"'{out}' holds checkpoints of an interrupted run; pass --resume to continue it or --force to start over")
    # A run that died before its first checkpoint left at most an empty checkpoints/: nothing to keep.
    leftovers = [path for path in out.iterdir() if not _is_empty_dir(path)] if out.exists() else []
    if leftovers and not config.resume:
        raise PocketbertError(f"output '{out}' already exists and is not empty; pass --force to overwrite it")
    (out / CHECKPOINTS).mkdir(parents=True, exist_ok=True)


def _is_empty_dir(path: Path) -> bool:
    return path.name == CHECKPOINTS and path.is_dir() and not any(path.iterdir())


def get_last_checkpoint_or_none(out: Path):
    """The newest OUT/checkpoints/checkpoint-N (what --resume continues from), or None."""
    folder = Path(out) / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def training_arguments(out: Path, config: TrainConfig) -> TrainingArguments:
    """The Trainer's arguments for `config`: bf16 (else fp16) on a GPU, CPU otherwise, checkpoints under OUT."""
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        use_cpu=not cuda,  # without it a CPU process ignores torchrun and trains alone on all the data
        ddp_find_unused_parameters=False,  # every trainable parameter takes part in every step
        train_sampling_strategy="group_by_length" if config.dynamic_padding else "random",
        output_dir=str(out / CHECKPOINTS), num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr, warmup_steps=config.warmup, weight_decay=config.weight_decay,
        lr_scheduler_type="linear", seed=config.seed, data_seed=config.seed,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=2,
        logging_strategy="steps", logging_steps=config.logging_steps, report_to="none",
        bf16=bf16, fp16=cuda and not bf16, remove_unused_columns=False, dataloader_num_workers=0, dataloader_pin_memory=cuda,
        eval_strategy="no", disable_tqdm=False,
    )


def train_and_save(trainer: RunTrainer, out: Path, config: TrainConfig, tokenizer, run_info: dict, evaluate=None) -> dict:
    """Train (resuming if asked), save the final model atomically, evaluate, write run.json last.

    Only the main process of a launch writes and scores; the others return {} once training is done.
    """
    main_process = trainer.is_world_process_zero()
    last = get_last_checkpoint_or_none(out) if config.resume else None
    if last:
        check_resumable(Path(last))
        trainer.loss_before_resume = read_json(Path(last) / LOSS_TOTAL_FILE, "checkpoint loss total") \
            if (Path(last) / LOSS_TOTAL_FILE).is_file() else {"step": 0, "loss_sum": 0.0}
    if main_process:
        if config.resume and last is None:
            print(f"no checkpoint in {out / CHECKPOINTS}; starting from step 0")
        elif last:
            print(f"resuming from {last}")
        _drop_metrics_after(out / METRICS_FILE, int(Path(last).name.rsplit("-", 1)[1]) if last else 0)
        for line in run_info.get("notes", ()):
            print(line)
        if evaluate and config.eval_steps > 0:
            trainer.add_callback(DevScoreCallback(evaluate, config.eval_steps, out / METRICS_FILE))
    try:
        result = trainer.train(resume_from_checkpoint=last)
    except KeyboardInterrupt as interrupt:
        # The checkpoints are kept on purpose (that is what --resume reads): say so, and how to go on.
        raise training_interrupted(out, config) from interrupt
    windows = _sum_over_processes(trainer.windows_trained, trainer.args.device)
    if not main_process:
        return {}
    if trainer.state.global_step == 0:
        # A run of no steps would save its input model as a finished run: never written as one.
        raise PocketbertError(f"the run trained 0 steps, so '{out}' was not written as a finished run; "
                              "pass --epochs above 0 or --max-steps of at least 1")
    model = _unwrap(trainer.model)
    tmp = out / f".final-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for file in tmp.iterdir():
        os.replace(file, out / file.name)
    tmp.rmdir()
    scores = evaluate(model) if evaluate else None
    if scores and config.eval_steps > 0:
        record_dev_scores(out / METRICS_FILE, trainer.state.global_step, scores)
    plot_losses(out / METRICS_FILE, out / LOSS_PLOT, title=run_info.get("command", "training"))
    step = trainer.state.global_step
    steps_now = step - trainer.loss_before_resume["step"]
    runtime = result.metrics.get("train_runtime")
    run = {
        **run_info,
        "train_config": {k: v for k, v in asdict(config).items() if k != "callbacks"},
        "global_step": step,
        # The mean over every step of the run, also when part of it ran before a --resume.
        "train_loss": (trainer.loss_before_resume["loss_sum"] + result.training_loss * steps_now) / max(step, 1),
        "train_runtime_s": runtime,
        "throughput": {"windows": windows, "windows_per_s": round(windows / runtime, 2) if runtime else None,
                       "processes": trainer.args.world_size,
                       "padding": "per batch, length-grouped" if config.dynamic_padding else "every window to the maximum"},
        "final_dev": scores,
        "device": str(trainer.args.device),
        "tool_versions": tool_versions(),
    }
    write_json(out / RUN_FILE, run)
    return run


# What a checkpoint folder must hold for --resume, and how each file is checked without trusting its contents.
CHECKPOINT_STATE = "trainer_state.json"
CHECKPOINT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
CHECKPOINT_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")


def check_resumable(checkpoint: Path) -> None:
    """One line naming the first damaged or missing file of `checkpoint` (a truncated model.safetensors, no
    trainer_state.json, an optimizer.pt that is not a PyTorch file), and the way out: resume from the checkpoint
    before it, or start again. Files are read the way the Trainer reads them (weights_only=True)."""
    checkpoint = Path(checkpoint)
    problem = _checkpoint_problem(checkpoint)
    if problem is None:
        return
    earlier = sorted((p for p in checkpoint.parent.glob("checkpoint-*") if p.is_dir() and p != checkpoint
                      and p.name.rsplit("-", 1)[-1].isdigit() and int(p.name.rsplit("-", 1)[-1]) <
                      int(checkpoint.name.rsplit("-", 1)[-1])), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    way_out = (f"move '{checkpoint}' out of {checkpoint.parent} to resume from {earlier[-1].name}, or pass --force "
               "(without --resume) to start again" if earlier else "pass --force (without --resume) to start again")
    raise PocketbertError(f"cannot resume from {checkpoint.name}: {problem}; {way_out}")


def _checkpoint_problem(checkpoint: Path) -> str | None:
    state = checkpoint / CHECKPOINT_STATE
    if not state.is_file():
        return f"'{state}' is missing (the checkpoint was cut short)"
    try:
        json.loads(state.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"'{state}' is damaged ({first_line(err)})"
    weights = next((checkpoint / name for name in CHECKPOINT_WEIGHTS if (checkpoint / name).is_file()), None)
    if weights is None:
        return f"'{checkpoint / CHECKPOINT_WEIGHTS[0]}' is missing"
    damage = safetensors_damage(weights) if weights.suffix == ".safetensors" else _torch_file_damage(weights)
    if damage:
        return f"'{weights}' is damaged ({damage})"
    for name in CHECKPOINT_TORCH_FILES:
        if (checkpoint / name).is_file():
            damage = _torch_file_damage(checkpoint / name)
            if damage:
                return f"'{checkpoint / name}' is damaged ({damage})"
    return None


def safetensors_damage(path: Path) -> str | None:
    """Why a .safetensors file cannot be loaded (a header that does not parse, data shorter than the header
    says), or None. Reads the header only."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > size - 8:
                return "its header runs past the end of the file: the file was cut short"
            header = json.loads(handle.read(header_len))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"not a safetensors file: {first_line(err)}"
    if not isinstance(header, dict):
        return "not a safetensors file: its header is not a table of tensors"
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets") or ()) == 2]
    needed = 8 + header_len + max(ends, default=0)
    if size < needed:
        return f"{size} bytes of the {needed} its header describes: the file was cut short"
    return None


def _torch_file_damage(path: Path) -> str | None:
    """Why torch.load(weights_only=True), as the Trainer calls it, fails on `path`, in our words, or None."""
    if not zipfile.is_zipfile(path):
        return "not a PyTorch file: not written by torch.save, or cut short"
    try:
        with safe_globals():  # the numpy types rng_state.pth holds, as the Trainer allows
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged archive
        return f"torch cannot read it: {type(err).__name__}"
    return None


def training_interrupted(out: Path, config: TrainConfig) -> KeyboardInterrupt:
    """The KeyboardInterrupt a training run ends with: what it kept (checkpoints, metrics) and that --resume
    continues from the newest checkpoint (pocketbert.cli completes the hint with the exact command)."""
    last = get_last_checkpoint_or_none(out)
    if last:
        return KeptOnInterrupt(f"the run's checkpoints were kept (newest: {last}); run.json and the final model "
                               "were not written", resume=True)
    return KeptOnInterrupt(f"it stopped before its first checkpoint (every --save-steps {config.save_steps} steps), so "
                           f"'{out}' holds no model, only its logs", resume=True)


def _sum_over_processes(count: int, device) -> int:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return count
    total = torch.tensor([count], device=device)
    torch.distributed.all_reduce(total)
    return int(total.item())


def _drop_metrics_after(metrics_path: Path, step: int) -> None:
    """The steps after the checkpoint are trained again: forget their old records."""
    if step == 0:
        metrics_path.unlink(missing_ok=True)
    elif metrics_path.is_file():
        lines = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        atomic_write_text(metrics_path, "".join(line + "\n" for line in lines))


def plot_losses(metrics_path: Path, png_path: Path, title: str) -> None:
    """The total loss and each term (loss_ce, loss_task, ...) against the optimiser step, and the dev F1 where
    it was scored during training (right axis)."""
    # lazy: matplotlib costs ~1 s and only the plot needs it; the headless backend is chosen before pyplot loads.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    losses, dev = [r for r in records if "loss" in r], [r for r in records if "dev_f1" in r]
    if not losses:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ["loss", *sorted({k for r in losses for k in r if k.startswith("loss_")})]:
        points = [(r["step"], r[key]) for r in losses if key in r]
        ax.plot(*zip(*points), label=key, marker="." if len(points) < 30 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="upper left")
    if len(dev) > 1:
        dev_axis = ax.twinx()
        dev_axis.plot([r["step"] for r in dev], [r["dev_f1"] for r in dev], color="black", marker="o", label="dev F1")
        dev_axis.set_ylabel("dev F1")
        dev_axis.legend(loc="upper right")
    save_figure(fig, png_path)


def save_figure(fig, png_path: Path) -> None:
    """Save a matplotlib figure through a temporary name, then close it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s and only a plot needs it (the caller has loaded it)

    fig.tight_layout()
    tmp = png_path.parent / f".{png_path.name}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def build_trainer(trainer_class, model, dataset, out: Path, config: TrainConfig, collator=None, **extra) -> Trainer:
    """A `trainer_class` over `dataset` with the run folder's arguments and metrics.jsonl logging; `extra` goes to
    the trainer (the teacher, the loss weights)."""
    callbacks = [JsonlMetricsCallback(out / METRICS_FILE), *config.callbacks]
    return trainer_class(model=model, args=training_arguments(out, config), train_dataset=dataset,
                         data_collator=collator, callbacks=callbacks, **extra)
