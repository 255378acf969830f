"""TFLite / LiteRT --precision int8-static (full-integer: int8 weights and activations, calibrated per signature) and
int4 (4-bit blockwise weights, embeddings included): run by the LiteRT interpreter and validated against the original
transformers model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import OWN_CALIBRATION, export_with_own_calibration

from pocketbert.cli import main
from pocketbert.export.api import export_model
from pocketbert.export.calibration import CALIBRATION_QUESTIONS, GENERATED_SOURCE
from pocketbert.manifest import read_manifest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("ai_edge_quantizer")

LENGTHS = (32, 64)
# Tolerances on the logits of the tiny random model (|logit| < 0.5), measured 0.13 (int8-static) and 0.07 (int4):
# loose enough for quantization noise, tight enough to catch a broken artifact (raw int8 logits, NaN, garbage).
MAX_ABS_DIFF = {"int8-static": 0.25, "int4": 0.15}
# The tiny random model's logits are nearly flat, so a row may flip.
MIN_ARGMAX_AGREEMENT = 2 / 3


@pytest.fixture(scope="module")
def exports(tiny_distilbert_qa, tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite-int")
    for precision in ("int8-static", "int4"):
        export_model(str(tiny_distilbert_qa), "tflite", root / precision, precision=precision, seq_lens=LENGTHS)
    return root


def dtypes_of(folder):
    from pocketbert.export.formats.tflite import operator_dtypes

    return operator_dtypes((folder / "model.tflite").read_bytes())


@pytest.mark.parametrize("precision", ["int8-static", "int4"])
def test_runs_in_litert_and_agrees_with_the_original_model(exports, precision):
    validation = read_manifest(exports / precision)["validation"]
    assert validation["ran"] and validation["runtime"] == "litert"
    assert validation["reference"].startswith("transformers DistilBertForQuestionAnswering, unmodified")
    assert validation["lengths"] == list(LENGTHS)
    # No fp32 logit tolerance (ours is above); the answer check gives random test models no verdict.
    assert validation["passed"] is not False and validation["tolerance"] is None
    assert 0 < validation["max_abs_diff"] <= MAX_ABS_DIFF[precision]
    assert min(validation["argmax_agreement"].values()) >= MIN_ARGMAX_AGREEMENT


def test_int8_static_computes_every_layer_in_int8(exports):
    folder = exports / "int8-static"
    quantization = read_manifest(folder)["graph"]["quantization"]
    assert quantization["recipe"] == "static_wi8_ai8" and quantization["activations"].startswith("int8")
    assert quantization["calibration_method"].startswith("MinMax")
    # Every calibration window of 32 and 64 tokens is full (no padding): no mask value stretched a softmax input's range.
    assert quantization["softmax_inputs_with_the_scores_range"] == 0
    # Per signature of 2 layers: 6 linear layers each + the QA head, 2 attention products each, 1 softmax each.
    int8_ops = quantization["integer_ops"]
    assert int8_ops["FULLY_CONNECTED"] == 26 and int8_ops["BATCH_MATMUL"] == 8 and int8_ops["SOFTMAX"] == 4
    assert {"GELU", "MEAN", "RSQRT", "ADD", "MUL"} <= set(int8_ops)
    # Left outside int8: the lookups of the int8 tables, the mask's cast, conversions in and out, shape arithmetic.
    assert set(quantization["other_ops"]) <= {"EMBEDDING_LOOKUP", "CAST", "QUANTIZE", "DEQUANTIZE", "RESHAPE"}
    found = dtypes_of(folder)
    assert all(inputs[:2] == ("INT8", "INT8") for (op, inputs, _) in found if op == "FULLY_CONNECTED")
    assert {inputs[1] for (op, inputs, _) in found if op == "EMBEDDING_LOOKUP"} == {"INT8"}

    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner("seq32")
    assert all(d["dtype"] == np.float32 for d in runner.get_output_details().values())  # logits stay float


def test_int8_static_calibrates_each_signature_at_its_own_length(exports):
    calibration = read_manifest(exports / "int8-static")["graph"]["quantization"]["calibration"]
    assert set(calibration) == {"seq32", "seq64"}
    for name, length in (("seq32", 32), ("seq64", 64)):
        assert calibration[name]["source"] == GENERATED_SOURCE
        assert calibration[name]["windows"] == CALIBRATION_QUESTIONS and calibration[name]["window_length"] == length


def test_int4_stores_every_weight_in_4_bits(exports):
    manifest = read_manifest(exports / "int4")
    quantization = manifest["graph"]["quantization"]
    assert quantization["recipe"] == "dynamic_wi4b32_afp32" and quantization["block_size"] == 32
    assert quantization["weight_ops"] == {"EMBEDDING_LOOKUP int4": 2, "FULLY_CONNECTED int4": 26}
    assert manifest["file_bytes"] < read_manifest(exports / "int8-static")["file_bytes"]


@pytest.mark.parametrize("precision,why", [("int8-static", "full-integer int8"), ("int4", "4-bit weights")])
def test_manifest_says_the_task_library_cannot_run_them(exports, precision, why):
    verdict = read_manifest(exports / precision)["graph"]["task_library"]
    assert verdict["bert_question_answerer"] is False and verdict["metadata"] is True
    assert why in verdict["why_not"][0] and "--precision fp16 or fp32" in verdict["why_not"][0]


def test_own_calibration_file_from_the_command_line(tiny_distilbert_qa, tmp_path):
    manifest, squad = export_with_own_calibration(tiny_distilbert_qa, "tflite", 96, tmp_path)
    quantization = manifest["graph"]["quantization"]
    calibration = quantization["calibration"]["seq96"]
    assert calibration["source"] == str(squad.resolve()) and calibration["questions"] == 3
    # Its windows are padded: each layer's attention scores + mask are quantized over the scores' own range.
    assert calibration["real_tokens"] < 3 * 96 and quantization["softmax_inputs_with_the_scores_range"] == 2
    assert manifest["validation"]["ran"]


@pytest.mark.parametrize("arguments,message", [
    (["--precision", "int8-static", "--calibration", "missing.json"], "calibration file 'missing.json' does not exist"),
    (["--precision", "int8-static", "--calibration", "not-squad.json"], "is not SQuAD v1.1 JSON"),
    (["--precision", "int4", "--calibration", "cal.json"], "drop it for tflite int4"),
])
def test_bad_calibration_is_refused_in_one_line(tiny_distilbert_qa, tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.json").write_text(json.dumps(OWN_CALIBRATION))
    (tmp_path / "not-squad.json").write_text(json.dumps({"questions": []}))
    assert main(["export", str(tiny_distilbert_qa), "--format", "tflite", *arguments, "--seq-len", "32",
                 "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    # Above it, only the warnings torch's libraries log while the exporter imports them (a SQuAD file is read then).
    assert err.splitlines()[-1].startswith("pocketbert: error: ") and message in err.splitlines()[-1]
    assert "Traceback" not in err
    assert not (tmp_path / "x").exists()
