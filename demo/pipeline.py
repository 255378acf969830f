"""`pocketbert demo`: the whole path on the embedded default, each step a pocketbert subcommand's function.

data -> QA teacher (all-MiniLM-L6-v2 + QA head) -> 3-layer student distilled from it -> exports to every
format -> bench vs BERT-base -> eval. (The same student trained without a teacher, and the paper's other
ablations, are `pocketbert distill ablation`: they do not fit the demo's 30 minutes.)
The `two-stage` recipe adds the paper's first stage: the teacher gets an MLM head, a student initialised
from its layers is distilled with the triple loss on BBC text, then QA-distilled like the other; the better
of the two distilled students (dev F1 during training) is exported.
A step whose output already exists is reused (outputs are written atomically, so existing means finished);
`--fresh` starts over.
"""
from __future__ import annotations

import datetime
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pocketbert.bench.evaluate import evaluate
from pocketbert.bench.measure import Baseline, BenchSettings, run_bench
from pocketbert.data.make_qa import make_qa_dataset, write_text_corpus
from pocketbert.distill.ablation import AblationSettings
from pocketbert.distill.qa_train import QAData, QALoss, train_qa
from pocketbert.distill.steps import StepRunner
from pocketbert.distill.student import init_student
from pocketbert.errors import PocketbertError
from pocketbert.export import export_model
from pocketbert.fsutil import atomic_write_text, read_json, write_json
from pocketbert.modeling import embedded_teacher_dir, load_qa_model
from pocketbert.qa import QAWindow

OUT = Path("runs/demo")
TIMINGS = "step_times.json"
SETTINGS = "settings.json"
RECIPES = ("qa", "two-stage")
# (folder, report label) of every student the demo may train.
STUDENTS = (("student-distilled", "student, QA distillation"),
            ("student-two-stage", "student, general (triple loss) + QA distillation"))


@dataclass(frozen=True)
class DemoSettings:
    """Chosen to finish in under 30 minutes on 2 CPU cores (the README gives the measured times)."""

    teacher: str | None = None  # None: the embedded all-MiniLM-L6-v2
    max_articles: int | None = None  # BBC articles the QA data is generated from (None: all)
    seed: int = 0
    student_layers: int = 3
    max_seq_len: int = 256  # generated contexts average 144 words; 256 tokens hold most in one window
    doc_stride: int = 128
    # 2,000 generated questions (~155 optimiser steps of 16 windows an epoch): the 2-core budget.
    train_examples: int = 2000
    dev_examples_in_training: int = 300  # the final report scores every dev question
    teacher_training: dict = field(default_factory=lambda: dict(epochs=1.0, batch_size=16, lr=2e-4, save_steps=50))
    # Two epochs: the teacher's logits are cached after the first, so the second costs the student's steps only;
    # dev F1 every 50 steps draws the curve.
    student_training: dict = field(default_factory=lambda: dict(epochs=2.0, batch_size=16, lr=3e-4, save_steps=50,
                                                                eval_steps=50))
    exports: tuple = (("executorch", "fp32"), ("executorch", "int8"), ("coreml", "fp16"), ("coreml", "int8"),
                      ("coreml", "palette4"), ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"),
                      ("onnx", "int8"))
    # Off macOS Core ML artifacts are scored by the numpy reference evaluator, ~2 s a 256-token window for the
    # 3-layer student: the first 25 dev questions (beside PyTorch on the same 25) keep the demo in budget.
    stand_in_questions: int | None = 25
    export_lengths: tuple = (256, 384)
    bench: dict = field(default_factory=lambda: dict(seq_lens=(384,), sweep=(64, 128, 256, 384), warmup=5, runs=20,
                                                     baseline="bert-base"))
    # The paper's first stage (None: skipped). Step budgets not yet measured against the 30-minute budget.
    general_distillation: dict | None = None
    mlm_head_training: dict = field(default_factory=lambda: AblationSettings().head_training)
    mlm_seq_len: int = 128


# The general stage's budget is the ablation's, so its arms measure what this recipe runs.
GENERAL_DISTILLATION = AblationSettings().general_training


def settings_for(recipe: str) -> DemoSettings:
    return DemoSettings(general_distillation=GENERAL_DISTILLATION if recipe == "two-stage" else None)


def run_demo(out: str | Path = OUT, fresh: bool = False, settings: DemoSettings = DemoSettings()) -> Path:
    """Run (or resume) every step; returns the path of the report."""
    # lazy: these two pull in transformers and torchao (~3.5 s), and demo/cli.py imports this module for `pocketbert --help`
    from pocketbert.distill.mlm_train import distill_mlm, fit_mlm_head
    from pocketbert.distill.trainer import TrainConfig

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    check_same_settings(out, settings)
    step = StepRunner(out / TIMINGS, "demo")

    s = settings
    base_teacher = s.teacher or embedded_teacher_dir()
    data, teacher, student_init = out / "data", out / "teacher", out / "student-init"
    student = out / "student-distilled"
    train, dev = data / "train.json", data / "dev.json"
    qa = QAData(train, dev, QAWindow(s.max_seq_len, s.doc_stride), s.train_examples, s.dev_examples_in_training)

    step("1. QA data from shipped BBC news", data / "data.json",
         lambda: make_qa_dataset(data, seed=s.seed, max_articles=s.max_articles))
    step("2. fine-tune the QA teacher (all-MiniLM-L6-v2)", teacher / "run.json",
         lambda: train_qa(base_teacher, qa, teacher, TrainConfig(seed=s.seed, **s.teacher_training)))
    step(f"3a. {s.student_layers}-layer student from the teacher's layers", student_init / "config.json",
         lambda: init_student(teacher, student_init, layers=s.student_layers))
    step("3b. distill the student on QA (teacher soft targets + gold spans)", student / "run.json",
         lambda: train_qa(student_init, qa, student, TrainConfig(seed=s.seed, **s.student_training), QALoss(teacher)))
    students = [student]
    if s.general_distillation:
        text, mlm_teacher = out / "text.txt", out / "teacher-mlm-head"
        general_init, general, two_stage = out / "student-general-init", out / "student-general", out / "student-two-stage"
        step("3d. unlabeled BBC text", text, lambda: write_text_corpus(text, max_articles=s.max_articles, seed=s.seed))
        step("3e. an MLM head for the base teacher (targets for L_ce)", mlm_teacher / "run.json",
             lambda: fit_mlm_head(base_teacher, text, mlm_teacher, TrainConfig(seed=s.seed, **s.mlm_head_training),
                                  s.mlm_seq_len))
        step(f"3f. {s.student_layers}-layer student from the base teacher's layers", general_init / "config.json",
             lambda: init_student(mlm_teacher, general_init, layers=s.student_layers))
        step("3g. general distillation on BBC text (5 L_ce + 2 L_mlm + 1 L_cos)", general / "run.json",
             lambda: distill_mlm(mlm_teacher, general_init, text, general,
                                 TrainConfig(seed=s.seed, **s.general_distillation), seq_len=s.mlm_seq_len))
        step("3h. distill the general student on QA", two_stage / "run.json",
             lambda: train_qa(general, qa, two_stage, TrainConfig(seed=s.seed, **s.student_training),
                              QALoss(teacher)))
        students.append(two_stage)
        # The better distilled student (dev F1 of its training run) is the one exported.
        student = max((student, two_stage), key=lambda folder: read_json(folder / "run.json", "run")["final_dev"]["f1"])
        print(f"[demo] exporting {student.name} (higher dev F1 during training)")

    artifacts = []
    for format, precision in s.exports:
        folder = out / "artifacts" / f"{format}-{precision}"
        step(f"4. export {format} {precision}", folder / "manifest.json",
             lambda: export_model(str(student), format, folder, precision=precision, seq_lens=s.export_lengths,
                                  dynamic=format in ("executorch", "onnx")))
        artifacts.append(folder)

    bench = out / "bench"
    step("5. bench on this CPU vs BERT-base", bench / "report.md",
         lambda: run_bench([str(a) for a in artifacts] + [str(student), str(teacher)], bench,
                           BenchSettings(**{k: v for k, v in s.bench.items() if k != "baseline"}),
                           Baseline(s.bench["baseline"], exported=False)))
    # The checkpoints are scored here too, on the whole dev set, so every F1 in the report counts the same questions.
    checkpoints = [teacher, *students]
    step("6. EM/F1 of every artifact in its runtime, and of the checkpoints in PyTorch", bench / "eval.json",
         lambda: evaluate([str(m) for m in artifacts + checkpoints], dev, QAWindow(s.max_seq_len, s.doc_stride),
                          out=bench, stand_in_questions=s.stand_in_questions))

    report = write_demo_report(out, artifacts, step.timings, student)
    print(f"[demo] report: {report}")
    return report


def check_same_settings(out: Path, settings) -> None:
    """Finished steps are reused by their outputs, so a rerun must have the settings (and recipe) they were made
    with: otherwise e.g. exports of one recipe's student would be reused for another's."""
    recorded, current = out / SETTINGS, json.loads(json.dumps(asdict(settings)))
    if recorded.is_file() and read_json(recorded, "demo settings") != current:
        raise PocketbertError(f"'{out}' holds a demo made with other settings (recipe or budgets, see {recorded}); "
                              "pass --fresh to redo it, or choose another --out")
    write_json(recorded, current)


def write_demo_report(out: Path, artifacts: list[Path], timings: dict[str, float], exported: Path) -> Path:
    """runs/demo/report.md: the stages, the quality ablation and the exports on top of the bench report."""
    scores = {Path(entry["artifact"]).name: entry
              for entry in read_json(out / "bench" / "eval.json", "evaluation")["entries"] if entry["format"] == "pytorch"}
    teacher_f1 = scores["teacher"]["f1"]
    lines = [
        "# pocketbert demo report", "",
        f"Made by `make demo` (`pocketbert demo`) on {datetime.date.today().isoformat()}. "
        "Teacher: all-MiniLM-L6-v2 with a QA head fine-tuned here; data: questions generated from BBC news "
        "(`pocketbert data make-qa`). Latency is this machine's CPU (the benchmark section names it).", "",
        f"## Quality (all {scores['teacher']['count']} dev questions, SQuAD v1.1 EM/F1, PyTorch)", "",
        "| model | layers | parameters | EM | F1 | % of teacher F1 |", "|---|---|---|---|---|---|",
    ]
    for name, label in (("teacher", "teacher (MiniLM-L6 + QA head)"), *STUDENTS):
        if name not in scores:
            continue
        source, score = load_qa_model(out / name).source, scores[name]
        kept = f"{100 * score['f1'] / teacher_f1:.1f}%" if teacher_f1 else "-"
        label += " (exported)" if name == exported.name else ""
        lines.append(f"| {label} | {source['encoder']['layers']} | {source['parameters']:,} | "
                     f"{score['exact_match']:.1f} | {score['f1']:.1f} | {kept} |")
    lines += ["", "## Stages and what each contributed (dev F1 points)", ""] + _stage_lines(scores)
    lines += ["", f"Training of the exported student ({exported.name}): loss terms and, on the right axis, F1 on the "
              "first dev questions scored during training (where it flattens, more steps stop paying):", "",
              f"![{exported.name} training]({exported.name}/loss.png)"]
    lines += ["", "## Exported artifacts (validated against PyTorch in their own runtime)", "",
              "| artifact | MB | validation |", "|---|---|---|"]
    for folder in artifacts:
        manifest = read_json(folder / "manifest.json", "manifest")
        v = manifest["validation"]
        check = (f"max abs diff {v['max_abs_diff']:.1e}, argmax agreement {v['argmax_agreement']['start']:.0%}/"
                 f"{v['argmax_agreement']['end']:.0%}" if v["ran"] else v["reason"])
        lines.append(f"| {folder.name} | {manifest['file_bytes'] / 1e6:.1f} | {check} |")
    lines += ["", "## Step times", ""] + [f"- {name}: {seconds:.0f} s" for name, seconds in timings.items()]
    lines.append(f"- total: {sum(timings.values()) / 60:.1f} min")
    # Nest the bench report one heading level down, its plots living in bench/.
    bench_text = re.sub(r"\]\((\w[\w.-]*\.png)\)", r"](bench/\1)", (out / "bench" / "report.md").read_text())
    lines += ["", re.sub(r"^(#+) ", r"#\1 ", bench_text, flags=re.M)]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def _stage_lines(scores: dict) -> list[str]:
    f1 = {name: entry["f1"] for name, entry in scores.items()}
    kept = (f"{100 * f1['student-distilled'] / f1['teacher']:.1f}% of the teacher's" if f1["teacher"]
            else "the teacher scores 0")
    lines = [f"- ran: the student initialised from the QA teacher's layers, then QA distillation (teacher soft targets "
             f"+ gold spans): F1 {f1['student-distilled']:.1f}, {kept}"]
    if "student-two-stage" in f1:
        lines.append(f"- general distillation (triple loss on BBC text, from the base teacher's layers) before QA "
                     f"distillation, over QA distillation of the QA teacher's layers: "
                     f"{f1['student-two-stage'] - f1['student-distilled']:+.1f}")
    else:
        lines.append("- general distillation (the paper's first stage): not run, it does not fit the 30-minute budget on 2 "
                     "cores (`pocketbert demo --recipe two-stage` runs it)")
    lines.append("- what each loss term, the teacher-layer initialisation and task distillation itself contribute: "
                 "`pocketbert distill ablation` (too long for the demo)")
    return lines
