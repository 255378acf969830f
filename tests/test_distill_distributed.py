"""`torchrun --nproc_per_node 2 -m pocketbert.cli distill qa ...` on CPU (gloo): one shard of the batches per
process, one log, one save, and the same model as one process taking both shards' batches at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file
from test_distill_qa import write_tiny_squad
from transformers import AutoModelForQuestionAnswering

from pocketbert.cli import main
from pocketbert.modeling import load_tokenizer

STEPS = 3


def _args(teacher, student, squad, out, batch_size):
    return ["distill", "qa", "--teacher", str(teacher), "--student", str(student), "--train", str(squad),
            "--dev", str(squad), "--out", str(out), "--max-seq-len", "48", "--doc-stride", "16", "--max-query-len", "16",
            "--max-steps", str(STEPS), "--batch-size", str(batch_size), "--lr", "1e-3", "--warmup", "0",
            "--logging-steps", "1", "--save-steps", "2", "--seed", "3",
            # Fixed padding and random order: both launches then draw the same windows in the same order.
            "--pad-to-max"]


def test_two_process_torchrun_trains_one_shard_each_and_matches_one_process(tiny_distilbert_qa, tiny_bert_qa, tmp_path):
    # Dropout off, so that the two launches differ only by how the batch is split.
    student = tmp_path / "student"
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_distilbert_qa), dropout=0.0, attention_dropout=0.0,
                                                          qa_dropout=0.0)
    model.save_pretrained(str(student))
    load_tokenizer(tiny_distilbert_qa).save_pretrained(str(student))
    squad = write_tiny_squad(tmp_path / "squad.json")

    assert main(_args(tiny_bert_qa, student, squad, tmp_path / "one", batch_size=8)) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launch = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "pocketbert.cli", *_args(tiny_bert_qa, student, squad, tmp_path / "two", batch_size=4)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    assert launch.stdout.count("dev EM") == 1  # only the main process scores and reports

    one, two = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("one", "two"))
    assert two["global_step"] == one["global_step"] == STEPS
    assert two["throughput"]["processes"] == 2 and one["throughput"]["processes"] == 1
    assert two["throughput"]["windows"] == one["throughput"]["windows"] == STEPS * 8
    records = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, STEPS + 1))  # once, not once per process
    assert abs(two["train_loss"] - one["train_loss"]) < 1e-3 * max(1.0, one["train_loss"])

    start = load_file(str(student / "model.safetensors"))
    final_one, final_two = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("one", "two"))
    moved = torch.cat([(final_one[name] - start[name]).flatten() for name in final_one]).norm()
    apart = torch.cat([(final_two[name] - final_one[name]).flatten() for name in final_one]).norm()
    # Adam amplifies float noise in near-zero gradients; the two runs stay far closer than either moved.
    assert apart < 0.05 * moved, (apart, moved)
    assert not list((tmp_path / "two").glob(".final-tmp-*"))
