"""`pocketbert demo`: the whole path on the embedded default, each step a pocketbert subcommand's function.

data -> QA teacher (all-MiniLM-L6-v2 + QA head) -> 3-layer student distilled from it (and the same student
trained without a teacher: the paper's ablation) -> exports to every format -> bench vs BERT-base -> eval.
A step whose output already exists is reused (outputs are written atomically, so existing means finished);
`--fresh` starts over.
"""
from __future__ import annotations

import datetime
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pocketbert.fsutil import atomic_write_text, read_json, write_json

OUT = Path("runs/demo")
TIMINGS = "step_times.json"


@dataclass(frozen=True)
class DemoSettings:
    """Chosen to finish in under 30 minutes on 2 CPU cores (the README gives the measured times)."""

    teacher: str | None = None  # None: the embedded all-MiniLM-L6-v2
    max_articles: int | None = None  # BBC articles the QA data is generated from (None: all)
    seed: int = 0
    student_layers: int = 3
    max_seq_len: int = 256  # generated contexts average 144 words; 256 tokens hold most in one window
    doc_stride: int = 128
    # One epoch over 2,000 generated questions (~155 optimiser steps of 16 windows): the 2-core budget.
    train_examples: int = 2000
    dev_examples_in_training: int = 300  # the final report scores every dev question
    teacher_training: dict = field(default_factory=lambda: dict(epochs=1.0, batch_size=16, lr=2e-4, save_steps=50))
    student_training: dict = field(default_factory=lambda: dict(epochs=1.0, batch_size=16, lr=3e-4, save_steps=50))
    exports: tuple = (("executorch", "fp32"), ("executorch", "int8"), ("coreml", "fp16"), ("coreml", "int8"),
                      ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8"))
    export_lengths: tuple = (256, 384)
    bench: dict = field(default_factory=lambda: dict(seq_lens=(384,), sweep=(64, 128, 256, 384), warmup=5, runs=20,
                                                     baseline="bert-base"))


def run_demo(out: str | Path = OUT, fresh: bool = False, settings: DemoSettings = DemoSettings()) -> Path:
    """Run (or resume) every step; returns the path of the report."""
    from pocketbert.bench.evaluate import evaluate
    from pocketbert.bench.measure import run_bench
    from pocketbert.data.make_qa import make_qa_dataset
    from pocketbert.distill.qa_train import train_qa
    from pocketbert.distill.student import init_student
    from pocketbert.distill.trainer import TrainConfig
    from pocketbert.export.api import export_model
    from pocketbert.modeling import embedded_teacher_dir
    from pocketbert.qa import QAWindow

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / TIMINGS
    timings = read_json(timings_path, "step times") if timings_path.exists() else {}

    def step(name: str, done: Path, work) -> None:
        if done.exists():
            print(f"[demo] {name}: reusing {done}")
            return
        print(f"[demo] {name} ...")
        started = time.perf_counter()
        work()
        timings[name] = round(time.perf_counter() - started, 1)
        write_json(timings_path, timings)  # kept across resumed runs, so the report shows every step
        print(f"[demo] {name}: done in {timings[name]:.0f} s")

    s = settings
    data, teacher, student_init = out / "data", out / "teacher", out / "student-init"
    student, ablation = out / "student-distilled", out / "student-no-teacher"
    train, dev = data / "train.json", data / "dev.json"
    features = dict(window=QAWindow(s.max_seq_len, s.doc_stride), max_train_examples=s.train_examples,
                    max_dev_examples=s.dev_examples_in_training)

    step("1. QA data from shipped BBC news", data / "data.json",
         lambda: make_qa_dataset(data, seed=s.seed, max_articles=s.max_articles))
    step("2. fine-tune the QA teacher (all-MiniLM-L6-v2)", teacher / "run.json",
         lambda: train_qa(s.teacher or embedded_teacher_dir(), train, dev, teacher,
                          TrainConfig(seed=s.seed, **s.teacher_training), **features))
    step(f"3a. {s.student_layers}-layer student from the teacher's layers", student_init / "config.json",
         lambda: init_student(teacher, student_init, layers=s.student_layers))
    step("3b. distill the student on QA (teacher soft targets + gold spans)", student / "run.json",
         lambda: train_qa(student_init, train, dev, student, TrainConfig(seed=s.seed, **s.student_training),
                          teacher_path=teacher, **features))
    step("3c. the same student without a teacher (ablation)", ablation / "run.json",
         lambda: train_qa(student_init, train, dev, ablation, TrainConfig(seed=s.seed, **s.student_training),
                          **features))

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
                           export_baseline=False, **s.bench))
    # The checkpoints are scored here too, on the whole dev set, so every F1 in the report counts the same questions.
    checkpoints = [teacher, student, ablation]
    step("6. EM/F1 of every artifact in its runtime, and of the checkpoints in PyTorch", bench / "eval.json",
         lambda: evaluate([str(m) for m in artifacts + checkpoints], dev, QAWindow(s.max_seq_len, s.doc_stride),
                          out=bench))

    report = write_demo_report(out, artifacts, timings)
    print(f"[demo] report: {report}")
    return report


def write_demo_report(out: Path, artifacts: list[Path], timings: dict[str, float]) -> Path:
    """runs/demo/report.md: the quality ablation and the exports on top of the bench report."""
    from pocketbert.modeling import load_qa_model

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
    for name, label in (("teacher", "teacher (MiniLM-L6 + QA head)"), ("student-distilled", "student, distilled"),
                        ("student-no-teacher", "student, no teacher (ablation)")):
        source, score = load_qa_model(out / name).source, scores[name]
        kept = f"{100 * score['f1'] / teacher_f1:.1f}%" if teacher_f1 else "-"
        lines.append(f"| {label} | {source['encoder']['layers']} | {source['parameters']:,} | "
                     f"{score['exact_match']:.1f} | {score['f1']:.1f} | {kept} |")
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


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole path on the embedded default: data, teacher, distill, export, bench, eval",
                       description=__doc__)
    p.add_argument("--out", default=str(OUT), help="where every step writes (default runs/demo)")
    p.add_argument("--fresh", action="store_true", help="redo every step instead of reusing finished ones")
    p.set_defaults(func=lambda args: print(run_demo(args.out, args.fresh)) or 0)
