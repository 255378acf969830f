"""`pocketbert distill ablation`: the DistilBERT paper's Table 4 in miniature on the embedded default.

The teacher (all-MiniLM-L6-v2) first gets an MLM head (`distill fit-mlm-head`), so L_ce has targets. Each
arm then distils a student from it on shipped BBC text with part of the triple loss (or from random
weights), and every arm's student is fine-tuned on the same QA data with the same settings and seed and
scored on the same dev questions. A last pair compares task distillation (the QA teacher's soft targets
during fine-tuning) with fine-tuning alone, on the full arm's student.

Paper (Sanh et al. 2019, Table 4): GLUE macro-score change against the full triple loss.
Here: SQuAD-style F1 change on generated BBC questions; a 3-layer student of a 6-layer teacher, minutes
of training instead of days, so expect the signs, not the sizes, to carry over.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from pocketbert.data.make_qa import make_qa_dataset, write_text_corpus
from pocketbert.distill.qa_train import FINE_TUNING, QAData, QALoss, train_qa
from pocketbert.distill.steps import StepRunner
from pocketbert.distill.student import init_student
from pocketbert.fsutil import atomic_write_text, read_json, write_json
from pocketbert.modeling import embedded_teacher_dir, load_tokenizer
from pocketbert.qa import QAWindow

OUT = Path("runs/ablation")
# (arm, L_ce, L_mlm, L_cos weights, student init, the paper's GLUE macro-score change)
GENERAL_ARMS = (
    ("triple loss", dict(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0), "teacher layers", 0.0),
    ("without L_ce", dict(alpha_ce=0.0, alpha_mlm=2.0, alpha_cos=1.0), "teacher layers", -2.96),
    ("without L_cos", dict(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=0.0), "teacher layers", -1.46),
    ("without L_mlm", dict(alpha_ce=5.0, alpha_mlm=0.0, alpha_cos=1.0), "teacher layers", -0.31),
    ("random init", dict(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0), "random", -3.69),
)


@dataclass(frozen=True)
class AblationSettings:
    """The 2-core defaults; on a GPU raise the step budgets and examples (`--scale`), nothing else changes."""

    teacher: str | None = None  # None: the embedded all-MiniLM-L6-v2 (any BERT checkpoint works)
    max_articles: int | None = None  # BBC articles for the QA data and the text (None: all)
    seed: int = 0
    student_layers: int = 3
    mlm_seq_len: int = 128
    max_seq_len: int = 256
    doc_stride: int = 128
    train_examples: int | None = 2000
    dev_examples: int | None = None  # None: every dev question
    # L_ce scores the whole 30,522-word vocabulary at every token: a general-distillation step of 16 x 128 tokens
    # costs seconds on 2 cores, so the general stage gets 100 steps (1,600 windows) per arm.
    head_training: dict = field(default_factory=lambda: dict(max_steps=100, batch_size=16, lr=1e-3, save_steps=50))
    general_training: dict = field(default_factory=lambda: dict(max_steps=100, batch_size=16, lr=5e-4, save_steps=50))
    qa_training: dict = field(default_factory=lambda: dict(epochs=1.0, batch_size=16, lr=3e-4, save_steps=50))
    teacher_training: dict = field(default_factory=lambda: dict(epochs=1.0, batch_size=16, lr=2e-4, save_steps=50))

    def scaled(self, factor: float) -> AblationSettings:
        """Every step budget and the training questions times `factor` (e.g. 20 on a GPU)."""
        def grow(training: dict) -> dict:
            grown = dict(training)
            if "max_steps" in grown:
                grown["max_steps"] = max(1, int(grown["max_steps"] * factor))  # a small --scale still trains
            if "epochs" in grown:
                grown["epochs"] = grown["epochs"] * factor
            return grown

        return replace(self, train_examples=max(1, int(self.train_examples * factor)) if self.train_examples else None,
                       head_training=grow(self.head_training), general_training=grow(self.general_training),
                       qa_training=grow(self.qa_training), teacher_training=grow(self.teacher_training))


def run_ablation(out: str | Path = OUT, settings: AblationSettings = AblationSettings(), fresh: bool = False) -> Path:
    """Run (or resume) every arm; returns the path of OUT/ablation.md (the PNG and JSON lie beside it)."""
    # lazy: transformers' model classes and distill.trainer (the HF Trainer) cost seconds; `pocketbert --help`
    # imports this module (through demo.pipeline, for AblationSettings) and only a run needs them.
    from transformers import AutoConfig, DistilBertForMaskedLM, set_seed

    from pocketbert.distill.mlm_train import distill_mlm, fit_mlm_head
    from pocketbert.distill.trainer import TrainConfig

    out, s = Path(out), settings
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    step = StepRunner(out / "step_times.json", "ablation")
    teacher = Path(s.teacher) if s.teacher else embedded_teacher_dir()
    data, text = out / "data", out / "text.txt"
    train, dev = data / "train.json", data / "dev.json"
    qa = QAData(train, dev, QAWindow(s.max_seq_len, s.doc_stride), s.train_examples, s.dev_examples)

    def config(training: dict) -> TrainConfig:
        return TrainConfig(seed=s.seed, force=True, **training)

    step("data: QA set from BBC news", data / "data.json",
         lambda: make_qa_dataset(data, seed=s.seed, max_articles=s.max_articles))
    step("data: unlabeled BBC text", text, lambda: write_text_corpus(text, max_articles=s.max_articles, seed=s.seed))
    mlm_teacher = out / "teacher-mlm-head"
    step("teacher: fit an MLM head (enables L_ce)", mlm_teacher / "run.json",
         lambda: fit_mlm_head(teacher, text, mlm_teacher, config(s.head_training), s.mlm_seq_len))
    init = out / "student-init"
    step(f"{s.student_layers}-layer student from the teacher's layers", init / "config.json",
         lambda: init_student(mlm_teacher, init, layers=s.student_layers))
    random_init = out / "student-random-init"

    def save_random_student():
        set_seed(s.seed)
        DistilBertForMaskedLM(AutoConfig.from_pretrained(str(init))).save_pretrained(str(random_init))
        load_tokenizer(init).save_pretrained(str(random_init))

    step("the same student with random weights", random_init / "config.json", save_random_student)

    arms = []
    for name, alphas, start, paper in GENERAL_ARMS:
        folder = out / name.replace(" ", "-").replace("_", "")
        student = init if start == "teacher layers" else random_init
        step(f"{name}: general distillation", folder / "general" / "run.json",
             lambda: distill_mlm(mlm_teacher, student, text, folder / "general", config(s.general_training),
                                 seq_len=s.mlm_seq_len, **alphas))
        step(f"{name}: QA fine-tuning", folder / "qa" / "run.json",
             lambda: train_qa(folder / "general", qa, folder / "qa", config(s.qa_training), FINE_TUNING))
        arms.append({"arm": name, "loss_weights": alphas, "init": start, "paper_delta_glue": paper,
                     "general": str(folder / "general"), "qa": str(folder / "qa")})

    qa_teacher = out / "teacher-qa"
    step("QA teacher: fine-tune the teacher", qa_teacher / "run.json",
         lambda: train_qa(teacher, qa, qa_teacher, config(s.teacher_training)))
    full = out / "triple-loss"
    task = out / "triple-loss" / "qa-distilled"
    step("triple loss: QA distillation from the QA teacher", task / "run.json",
         lambda: train_qa(full / "general", qa, task, config(s.qa_training), QALoss(qa_teacher)))
    return write_ablation_report(out, settings, arms, qa_teacher, task, step.timings)


def _scores(run_folder) -> dict:
    return read_json(Path(run_folder) / "run.json", "run")["final_dev"]


def write_ablation_report(out: Path, settings: AblationSettings, arms: list[dict], qa_teacher: Path, task: Path,
                          timings: dict) -> Path:
    """Score every finished arm against the triple loss and write OUT/ablation.md, .json and .png beside the paper's
    numbers; returns the Markdown path. Reads only run.json files, so a finished ablation can be re-reported."""
    full_f1 = _scores(arms[0]["qa"])["f1"]
    for arm in arms:
        scores = _scores(arm["qa"])
        arm.update(exact_match=round(scores["exact_match"], 2), f1=round(scores["f1"], 2),
                   delta_f1=round(scores["f1"] - full_f1, 2), questions=scores["count"])
    teacher, distilled = _scores(qa_teacher), _scores(task)
    lines = [
        "# DistilBERT ablation in miniature", "",
        "Made by `pocketbert distill ablation` (`make ablation`). Paper: Sanh et al. 2019, Table 4 (GLUE "
        "macro-score change vs the triple loss). Here: each arm's student is fine-tuned on the same QA data "
        f"with the same settings and seed {settings.seed}, and scored on the same {arms[0]['questions']} dev "
        "questions (SQuAD v1.1 F1).", "",
        "| arm | L_ce | L_mlm | L_cos | init | EM | F1 | Δ F1 | paper Δ (GLUE) |", "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        w = arm["loss_weights"]
        paper = f"{arm['paper_delta_glue']:+.2f}" if arm["paper_delta_glue"] else "0 (reference)"
        lines.append(f"| {arm['arm']} | {w['alpha_ce']:g} | {w['alpha_mlm']:g} | {w['alpha_cos']:g} | {arm['init']} | "
                     f"{arm['exact_match']:.1f} | {arm['f1']:.1f} | {arm['delta_f1']:+.2f} | {paper} |")
    lines += [
        "", "## Task distillation (on the triple-loss student)", "",
        "| QA training | EM | F1 | Δ F1 |", "|---|---|---|---|",
        f"| fine-tuning only (gold spans) | {arms[0]['exact_match']:.1f} | {full_f1:.1f} | 0 (reference) |",
        f"| QA distillation (teacher soft targets + gold spans) | {distilled['exact_match']:.1f} | "
        f"{distilled['f1']:.1f} | {distilled['f1'] - full_f1:+.2f} |",
        f"| the QA teacher itself | {teacher['exact_match']:.1f} | {teacher['f1']:.1f} | {teacher['f1'] - full_f1:+.2f} |",
        "", "![ablation](ablation.png)", "", "## Settings", "", "```",
        *[f"{name}: {value}" for name, value in asdict(settings).items()], "```", "",
        "## Step times", "", *[f"- {name}: {seconds:.0f} s" for name, seconds in timings.items()],
        f"- total: {sum(timings.values()) / 60:.1f} min",
    ]
    write_json(out / "ablation.json", {"settings": asdict(settings), "arms": arms,
                                       "task_distillation": {"fine_tuned_f1": full_f1, "distilled_f1": distilled["f1"],
                                                             "teacher_f1": teacher["f1"]},
                                       "step_times_s": timings})
    _plot(arms, out / "ablation.png")
    return atomic_write_text(out / "ablation.md", "\n".join(lines) + "\n")


def _plot(arms: list[dict], png: Path) -> None:
    # lazy: matplotlib costs ~1 s and only the plot needs it; the headless backend is chosen before pyplot loads.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pocketbert.distill.trainer import save_figure  # lazy: as in run_ablation

    ablated = arms[1:]
    x = np.arange(len(ablated))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, [a["delta_f1"] for a in ablated], 0.4, label="here: Δ QA F1")
    ax.bar(x + 0.2, [a["paper_delta_glue"] for a in ablated], 0.4, label="paper: Δ GLUE macro-score")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [a["arm"] for a in ablated])
    ax.set_ylabel("change vs the triple loss")
    ax.set_title("DistilBERT ablation (Table 4) in miniature")
    ax.legend()
    save_figure(fig, png)
