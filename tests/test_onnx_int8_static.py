"""ONNX --precision int8-static: int8 weights and activations (QDQ), calibrated on real QA windows, run by ONNX Runtime
and validated against the original transformers model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import OWN_CALIBRATION, export_with_own_calibration

from pocketbert.cli import main
from pocketbert.export.api import export_model
from pocketbert.export.calibration import CALIBRATION_QUESTIONS, GENERATED_SOURCE
from pocketbert.export.registry import load_artifact
from pocketbert.manifest import read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.reference import validation_inputs


@pytest.fixture(scope="module")
def onnx_int8_static(tiny_distilbert_qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-int8-static") / "int8-static"
    export_model(str(tiny_distilbert_qa), "onnx", out, precision="int8-static", seq_lens=(32, 64))
    return out


def test_int8_static_quantizes_activations_and_agrees_with_the_original_model(onnx_int8_static):
    manifest = read_manifest(onnx_int8_static)
    assert manifest["artifact"] == "onnx/model_int8.onnx"
    assert json.loads((onnx_int8_static / "config.json").read_text())["transformers.js_config"] == {"dtype": "int8"}
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(manifest["graph"]["op_types"])
    quantization = manifest["graph"]["quantization"]
    assert quantization["calibration_method"] == "MinMax" and quantization["activations"].startswith("int8")
    # Every linear layer and attention product but the 2 feed-forward down projections, whose inputs stay float; the
    # ops that carry the attention mask or lose accuracy in int8 stay float too.
    assert quantization["integer_ops"]["MatMul"] == 15 and quantization["kept_float"]["feed_forward_down_projections"] == 2
    assert quantization["other_ops"]["Softmax"] == 2 and quantization["other_ops"]["LayerNormalization"] == 5
    calibration = quantization["calibration"]
    assert calibration["source"] == GENERATED_SOURCE and calibration["questions_available"] > 10_000
    assert calibration["questions"] == calibration["windows"] == CALIBRATION_QUESTIONS
    assert calibration["window_length"] == 64
    validation = manifest["validation"]
    assert validation["ran"] and validation["runtime"] == "onnxruntime"
    assert validation["reference"].startswith("transformers DistilBertForQuestionAnswering, unmodified")
    assert validation["passed"] is None and validation["tolerance"] is None  # no fp32 tolerance for int8
    assert validation["max_abs_diff"] < 0.2
    # The random tiny model's logits are nearly flat, so a row may flip.
    assert min(validation["argmax_agreement"].values()) >= 2 / 3


def test_int8_static_runs_in_onnx_runtime_with_any_batch_and_length(onnx_int8_static, tiny_distilbert_qa):
    runner = load_artifact(onnx_int8_static, read_manifest(onnx_int8_static))
    inputs = validation_inputs(load_tokenizer(tiny_distilbert_qa), runner.input_names, 48)
    start, end = runner(inputs)
    assert start.shape == end.shape == inputs["input_ids"].shape and np.isfinite(start).all()


def test_own_calibration_file_from_the_command_line(tiny_distilbert_qa, tmp_path):
    manifest, squad = export_with_own_calibration(tiny_distilbert_qa, "onnx", 32, tmp_path)
    calibration = manifest["graph"]["quantization"]["calibration"]
    assert calibration["source"] == str(squad.resolve()) and calibration["questions"] == 3
    assert manifest["options"]["calibration"] == str(squad.resolve())
    assert manifest["validation"]["ran"]


@pytest.mark.parametrize("arguments,message", [
    (["--format", "onnx", "--precision", "int8", "--calibration", "cal.json"],
     "--calibration applies only to onnx int8-static"),
    (["--format", "onnx", "--precision", "int8-static", "--calibration", "missing.json"],
     "calibration file 'missing.json' does not exist"),
    (["--format", "executorch", "--precision", "int8-static"], "format executorch has no precision 'int8-static'"),
])
def test_refusals_are_one_line(tiny_distilbert_qa, tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.json").write_text(json.dumps(OWN_CALIBRATION))
    assert main(["export", str(tiny_distilbert_qa), *arguments, "--seq-len", "32", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pocketbert: error: ") and "\n" not in err and message in err
    assert not (tmp_path / "x").exists()


def test_bench_counts_int8_static_as_int8():
    from pocketbert.bench.measure import peak_precision
    from pocketbert.bench.report import INT8_PRECISIONS

    assert peak_precision("int8-static") == "int8" and "int8-static" in INT8_PRECISIONS


def test_bench_calibrates_the_exported_baseline_on_the_candidates_own_file(tiny_distilbert_qa, tiny_bert_qa, tmp_path):
    from pocketbert.bench.measure import baseline_targets
    from pocketbert.bench.runtimes import open_target

    squad = tmp_path / "calibration.json"
    squad.write_text(json.dumps(OWN_CALIBRATION))
    candidate = tmp_path / "candidate"
    export_model(str(tiny_distilbert_qa), "onnx", candidate, precision="int8-static", seq_lens=(32,),
                 calibration=str(squad))
    targets = baseline_targets(str(tiny_bert_qa), [open_target(candidate)], tmp_path / "cache", True, [32])
    exported = read_manifest(targets[1].path)
    assert exported["precision"] == "int8-static"
    assert exported["graph"]["quantization"]["calibration"]["source"] == str(squad.resolve())
