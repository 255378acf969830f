"""One rulebook (pocketbert/rules.py) and one set of runtime settings (the manifest's, applied by pocketbert/sessions.py):
an artifact is judged alike, and run alike, at export time, by bench and on every device target."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketbert import rules
from pocketbert.bench.measure import Baseline, BenchSettings, run_bench
from pocketbert.export.api import export_model
from pocketbert.manifest import read_manifest
from pocketbert.mobile_harness.linux import HostTarget
from pocketbert.mobile_harness.run import run_on_device
from pocketbert.modeling import load_qa_model
from pocketbert.results import load_results
from pocketbert.sessions import applied


@pytest.fixture(scope="module")
def confident_checkpoint(tiny_distilbert_qa, tmp_path_factory):
    """The tiny model with its QA head scaled up: random weights, but logits far apart, as a trained model's are, so
    the answer rule reaches a verdict."""
    loaded = load_qa_model(str(tiny_distilbert_qa))
    with torch.no_grad():
        loaded.model.qa_outputs.weight.mul_(1000)
    folder = tmp_path_factory.mktemp("confident")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def confident_int8(confident_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts") / "onnx-int8"
    export_model(str(confident_checkpoint), "onnx", out, precision="int8", seq_lens=(64,))
    return out


def test_the_rule_reads_like_its_definition():
    reference = [np.array([[0.0, 5.0, 0.0, 0.0]] * 4), np.array([[3.0, 0.0, 0.0, 0.0]] * 4)]
    mask = np.ones((4, 4))
    assert rules.judge([r + 1e-5 for r in reference], reference, "fp32", mask)["passed"] is True
    assert rules.judge([r + 1e-3 for r in reference], reference, "fp32", mask)["passed"] is False
    # Below fp32 the answers decide: the same positions pass whatever the logits, other positions fail.
    assert rules.judge([r * 0.5 for r in reference], reference, "int8", mask)["passed"] is True
    assert rules.judge([-r for r in reference], reference, "int8", mask)["passed"] is False
    # Too few confident positions: no verdict, and the reason says so.
    flat = [np.zeros((1, 4)), np.zeros((1, 4))]
    check = rules.judge(flat, flat, "fp16", np.ones((1, 4)))
    assert check["passed"] is None and rules.verdict_reason(check).startswith("no verdict")


def test_a_quantized_artifact_is_judged_alike_at_export_and_on_a_device(confident_int8, tmp_path):
    at_export = read_manifest(confident_int8)["validation"]["confident_answers"]
    assert at_export["passed"] is True and at_export["confident_positions"] >= rules.MIN_CONFIDENT_POSITIONS
    record, = run_on_device(HostTarget(), [confident_int8], tmp_path / "device", warmup=0, runs=1, seq_len=64)
    on_device, = load_results(tmp_path / "device")["settings"]["output_checks"].values()
    assert record["status"] == "ok" and on_device["passed"] is True
    answers = on_device["confident_answers"]
    assert (answers["agreement"], answers["confident_positions"]) == (at_export["agreement"],
                                                                      at_export["confident_positions"])
    assert on_device["rule"] == at_export["rule"] == rules.rule_for("int8")


def test_a_device_row_and_a_bench_row_ran_with_the_manifests_settings(tiny_distilbert_qa, tmp_path):
    onnx_fp32 = tmp_path / "onnx-fp32"
    export_model(str(tiny_distilbert_qa), "onnx", onnx_fp32, seq_lens=(64,))
    manifest = read_manifest(onnx_fp32)
    expected = applied(manifest["runtime_settings"], 1)
    device, = run_on_device(HostTarget(), [onnx_fp32], tmp_path / "device", warmup=0, runs=1, threads=1, seq_len=64)
    bench = run_bench([str(onnx_fp32)], tmp_path / "bench",
                      BenchSettings(seq_lens=(64,), modes=("model",), warmup=0, runs=1, threads=1), Baseline(None))
    timed = [r for r in bench["records"] if r["format"] == "onnx" and r["status"] == "ok"]
    assert device["runtime_settings"] == expected
    assert timed and all(r["runtime_settings"] == expected for r in timed)
