"""`pocketbert distill throughput` on tiny models: every arm runs, and the teacher cache changes nothing but speed."""
from __future__ import annotations

import json

from test_distill_qa import write_tiny_squad

from pocketbert.cli import main


def test_throughput_arms_and_cache_equivalence(tiny_bert_qa, tmp_path, capsys):
    student = tmp_path / "student"
    assert main(["distill", "init", str(tiny_bert_qa), "--out", str(student)]) == 0
    squad = write_tiny_squad(tmp_path / "squad.json", n=8)
    out = tmp_path / "throughput"
    assert main(["distill", "throughput", "--teacher", str(tiny_bert_qa), "--student", str(student), "--train", str(squad),
                 "--out", str(out), "--max-seq-len", "48", "--doc-stride", "16", "--max-query-len", "16",
                 "--epochs", "2", "--batch-size", "8"]) == 0
    assert "| per-batch padding, teacher cached |" in capsys.readouterr().out
    arms = json.loads((out / "throughput.json").read_text())["arms"]
    assert [a["speedup"] for a in arms][0] == 1.0 and all(a["windows_per_s"] > 0 for a in arms)
    assert arms[0]["windows"] == arms[1]["windows"] == arms[2]["windows"]
    # Same batches, same teacher logits whether cached or recomputed: the same losses.
    assert abs(arms[1]["train_loss"] - arms[2]["train_loss"]) < 1e-5
    assert (out / "throughput.png").stat().st_size > 0
