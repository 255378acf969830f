"""`pocketbert distill throughput`: QA-distillation windows/s of the trainer's speed levers against the
trainer as it was (every window padded to the maximum length, the teacher run on every step).

Each arm is an ordinary `distill qa` run on the same data, seed and step budget; windows/s is the one its
run.json records. Several epochs are needed to see the teacher cache: it pays from the second one on.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pocketbert.distill.qa_train import QAData, QALoss, train_qa
from pocketbert.distill.trainer import save_figure
from pocketbert.fsutil import atomic_write_text, write_json
from pocketbert.qa import QAWindow

ARMS = (
    ("fixed padding, teacher every step (before)", dict(dynamic_padding=False, teacher_cache=False)),
    ("per-batch padding, teacher every step", dict(dynamic_padding=True, teacher_cache=False)),
    ("per-batch padding, teacher cached", dict(dynamic_padding=True, teacher_cache=True)),
)


def compare_throughput(teacher, student, train, out, config, window: QAWindow = QAWindow(),
                       max_train_examples: int | None = None) -> Path:
    """Run every arm into OUT/<n>/ and write OUT/throughput.md, .json and .png; returns the Markdown path."""
    out = Path(out)
    rows = []
    for number, (label, levers) in enumerate(ARMS, 1):
        arm_config = replace(config, **levers, logging_steps=max(config.logging_steps, 50))
        print(f"[throughput] {number}/{len(ARMS)}: {label}")
        run = train_qa(student, QAData(train, train, window, max_train_examples, max_dev_examples=1),
                       out / str(number), arm_config, QALoss(teacher))
        rows.append({"arm": label, **levers, "windows": run["throughput"]["windows"],
                     "seconds": round(run["train_runtime_s"], 1), "windows_per_s": run["throughput"]["windows_per_s"],
                     "train_loss": run["train_loss"]})
    base = rows[0]["windows_per_s"]
    for row in rows:
        row["speedup"] = round(row["windows_per_s"] / base, 2)
    write_json(out / "throughput.json", {"teacher": str(teacher), "student": str(student), "train": str(train),
                                         "epochs": config.epochs, "max_steps": config.max_steps,
                                         "batch_size": config.batch_size, "window": window.__dict__, "arms": rows})
    _plot(rows, out / "throughput.png")
    lines = ["# QA distillation throughput", "",
             f"`pocketbert distill throughput`: teacher `{teacher}`, student `{student}`, {config.epochs:g} epochs "
             f"of batch {config.batch_size}, windows of at most {window.max_seq_len} tokens.", "",
             "| arm | windows | s | windows/s | speedup | train loss |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['arm']} | {r['windows']} | {r['seconds']} | {r['windows_per_s']} | {r['speedup']}x | "
              f"{r['train_loss']:.4f} |" for r in rows]
    lines += ["", "![windows/s](throughput.png)"]
    return atomic_write_text(out / "throughput.md", "\n".join(lines) + "\n")


def _plot(rows: list[dict], png: Path) -> None:
    # lazy: matplotlib costs ~1 s and only the plot needs it; the headless backend is chosen before pyplot loads.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.barh([r["arm"] for r in rows][::-1], [r["windows_per_s"] for r in rows][::-1], color="tab:blue")
    ax.set_xlabel("training windows / s (higher is better)")
    ax.set_title("QA distillation throughput")
    save_figure(fig, png)
