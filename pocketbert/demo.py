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
from pathlib import Path

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_write_text, read_json

# The demo's settings, chosen to finish in under 30 minutes on 2 CPU cores (see README for measured times).
OUT = Path("runs/demo")
SEED = 0
STUDENT_LAYERS = 3
MAX_SEQ_LEN = 256  # generated contexts average 144 words; 256 tokens hold most in one window
DOC_STRIDE = 128
# One epoch over 2,000 generated questions (~130 optimiser steps of 16 windows): the 2-core budget.
TRAIN_EXAMPLES = 2000
DEV_EXAMPLES = 300
TEACHER_TRAINING = dict(epochs=1.0, batch_size=16, lr=2e-4, save_steps=50)
STUDENT_TRAINING = dict(epochs=1.0, batch_size=16, lr=3e-4, save_steps=50)
EXPORTS = [("executorch", "fp32"), ("executorch", "int8"), ("coreml", "fp16"), ("coreml", "int8"),
           ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")]
EXPORT_LENGTHS = (MAX_SEQ_LEN, 384)
BENCH = dict(seq_lens=(384,), sweep=(64, 128, 256, 384), warmup=5, runs=20, baseline="bert-base")


def run_demo(out: str | Path = OUT, fresh: bool = False) -> Path:
    """Run (or resume) every step; returns the path of the report."""
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str, done: Path, work) -> None:
        if done.exists():
            print(f"[demo] {name}: reusing {done}")
            return
        print(f"[demo] {name} ...")
        started = time.perf_counter()
        work()
        timings[name] = time.perf_counter() - started
        print(f"[demo] {name}: done in {timings[name]:.0f} s")

    from pocketbert.bench.evaluate import evaluate
    from pocketbert.bench.measure import run_bench
    from pocketbert.distill.make_qa import make_qa_dataset
    from pocketbert.distill.qa_train import train_qa
    from pocketbert.distill.student import init_student
    from pocketbert.distill.trainer import TrainConfig
    from pocketbert.export.api import export_model
    from pocketbert.modeling import embedded_teacher_dir

    data, teacher, student_init = out / "data", out / "teacher", out / "student-init"
    student, ablation = out / "student-distilled", out / "student-no-teacher"
    train, dev = data / "train.json", data / "dev.json"
    features = dict(max_seq_len=MAX_SEQ_LEN, doc_stride=DOC_STRIDE, max_train_examples=TRAIN_EXAMPLES,
                    max_dev_examples=DEV_EXAMPLES)

    step("1. QA data from shipped BBC news", data / "data.json", lambda: make_qa_dataset(data, seed=SEED))
    step("2. fine-tune the QA teacher (all-MiniLM-L6-v2)", teacher / "run.json",
         lambda: train_qa(embedded_teacher_dir(), train, dev, teacher, TrainConfig(seed=SEED, **TEACHER_TRAINING),
                          **features))
    step(f"3a. {STUDENT_LAYERS}-layer student from the teacher's layers", student_init / "config.json",
         lambda: init_student(teacher, student_init, layers=STUDENT_LAYERS))
    step("3b. distill the student on QA (teacher soft targets + gold spans)", student / "run.json",
         lambda: train_qa(student_init, train, dev, student, TrainConfig(seed=SEED, **STUDENT_TRAINING),
                          teacher_path=teacher, **features))
    step("3c. the same student without a teacher (ablation)", ablation / "run.json",
         lambda: train_qa(student_init, train, dev, ablation, TrainConfig(seed=SEED, **STUDENT_TRAINING), **features))

    artifacts = []
    for format, precision in EXPORTS:
        folder = out / "artifacts" / f"{format}-{precision}"
        step(f"4. export {format} {precision}", folder / "manifest.json",
             lambda: export_model(str(student), format, folder, precision=precision, seq_lens=EXPORT_LENGTHS,
                                  dynamic=format in ("executorch", "onnx")))
        artifacts.append(folder)

    bench = out / "bench"
    step("5. bench on this CPU vs BERT-base", bench / "results.json",
         lambda: run_bench([str(a) for a in artifacts] + [str(student), str(teacher)], bench,
                           export_baseline=False, **BENCH))
    step("6. EM/F1 of every artifact in its runtime", bench / "eval.json",
         lambda: evaluate([str(a) for a in artifacts], dev, max_seq_len=MAX_SEQ_LEN, doc_stride=DOC_STRIDE,
                          out=bench))

    report = write_demo_report(out, artifacts, timings)
    print(f"[demo] report: {report}")
    return report


def write_demo_report(out: Path, artifacts: list[Path], timings: dict[str, float]) -> Path:
    """runs/demo/report.md: the quality ablation and the exports on top of the bench report."""
    from pocketbert.modeling import load_qa_model

    runs = {name: read_json(out / name / "run.json", "training record")
            for name in ("teacher", "student-distilled", "student-no-teacher")}
    teacher_f1 = runs["teacher"]["final_dev"]["f1"]
    lines = [
        "# pocketbert demo report", "",
        f"Made by `make demo` (`pocketbert demo`) on {datetime.date.today().isoformat()}. "
        "Teacher: all-MiniLM-L6-v2 with a QA head fine-tuned here; data: questions generated from BBC news "
        "(`pocketbert data make-qa`). Latency is this machine's CPU; see bench/report.md for the machine.", "",
        "## Quality (dev set, SQuAD v1.1 EM/F1)", "",
        "| model | layers | parameters | EM | F1 | % of teacher F1 |", "|---|---|---|---|---|---|",
    ]
    for name, label in (("teacher", "teacher (MiniLM-L6 + QA head)"), ("student-distilled", "student, distilled"),
                        ("student-no-teacher", "student, no teacher (ablation)")):
        source = load_qa_model(out / name).source
        scores = runs[name]["final_dev"]
        lines.append(f"| {label} | {source['encoder']['layers']} | {source['parameters']:,} | {scores['exact_match']:.1f} | "
                     f"{scores['f1']:.1f} | {100 * scores['f1'] / teacher_f1:.1f}% |")
    lines += ["", "## Exported artifacts (validated against PyTorch in their own runtime)", "",
              "| artifact | MB | validation |", "|---|---|---|"]
    for folder in artifacts:
        manifest = read_json(folder / "manifest.json", "manifest")
        v = manifest["validation"]
        check = (f"max abs diff {v['max_abs_diff']:.1e}, argmax agreement {v['argmax_agreement']['start']:.0%}/"
                 f"{v['argmax_agreement']['end']:.0%}" if v["ran"] else v["reason"])
        lines.append(f"| {folder.name} | {manifest['file_bytes'] / 1e6:.1f} | {check} |")
    if timings:
        lines += ["", "## Step times (this run)", ""] + [f"- {name}: {seconds:.0f} s" for name, seconds in timings.items()]
    bench_report = out / "bench" / "report.md"
    if not bench_report.is_file():
        raise PocketbertError(f"{bench_report} is missing; rerun `pocketbert demo`")
    # Nest the bench report one heading level down, its plots living in bench/.
    bench_text = re.sub(r"\]\((\w[\w.-]*\.png)\)", r"](bench/\1)", bench_report.read_text())
    lines += ["", re.sub(r"^(#+) ", r"#\1 ", bench_text, flags=re.M)]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole path on the embedded default: data, teacher, distill, export, bench, eval",
                       description=__doc__)
    p.add_argument("--out", default=str(OUT), help="where every step writes (default runs/demo)")
    p.add_argument("--fresh", action="store_true", help="redo every step instead of reusing finished ones")
    p.set_defaults(func=lambda args: print(run_demo(args.out, args.fresh)) or 0)
