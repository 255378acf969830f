"""--precision a16w8 (ONNX, TFLite): int8 weights and 16-bit activations on every op, calibrated on real QA windows,
the full-integer form NPUs with 16-bit activations take (Qualcomm QNN's mixed precision, TFLite's 16x8); run by ONNX
Runtime and the LiteRT interpreter and validated against the original transformers model, for an architecture without
segment embeddings (DistilBERT) and one with them (BERT)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import export_with_own_calibration

from pocketbert.cli import main
from pocketbert.export.api import export_model
from pocketbert.export.calibration import CALIBRATION_QUESTIONS, GENERATED_SOURCE
from pocketbert.manifest import read_manifest

pytest.importorskip("onnxruntime")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

LENGTH = 64
# 16-bit activations keep the tiny random model's logits (|logit| < 0.5) within a few hundredths (measured 0.01-0.03);
# a broken artifact (raw integer logits, NaN, a mask that leaked) is far outside.
MAX_ABS_DIFF = 0.08
# The ops that move or look up values without arithmetic, which need no quantization parameters of their own.
DATA_MOVEMENT_ONNX = {"Reshape", "Slice", "Concat", "Gather", "Shape", "Squeeze", "Unsqueeze", "Cast", "Expand",
                      "Where", "Equal", "Range", "ConstantOfShape", "Transpose"}


@pytest.fixture(scope="module", params=["distilbert", "bert"])
def checkpoint(request, tiny_distilbert_qa, tiny_bert_qa):
    return {"distilbert": tiny_distilbert_qa, "bert": tiny_bert_qa}[request.param]


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("a16w8")
    for format_name in ("onnx", "tflite"):
        export_model(str(checkpoint), format_name, root / format_name, precision="a16w8", seq_lens=(LENGTH,))
    return root


@pytest.mark.parametrize("format_name,runtime", [("onnx", "onnxruntime"), ("tflite", "litert")])
def test_runs_in_its_runtime_and_agrees_with_the_original_model(exports, format_name, runtime):
    manifest = read_manifest(exports / format_name)
    validation = manifest["validation"]
    assert validation["ran"] and validation["runtime"] == runtime
    assert "unmodified" in validation["reference"]
    assert validation["passed"] is not False and validation["tolerance"] is None  # no fp32 tolerance below fp32
    assert 0 < validation["max_abs_diff"] <= MAX_ABS_DIFF
    assert min(validation["argmax_agreement"].values()) >= 2 / 3  # nearly flat random logits: a row may flip
    calibration = manifest["graph"]["quantization"]["calibration"]
    calibration = calibration if format_name == "onnx" else calibration[f"seq{LENGTH}"]
    assert calibration["source"] == GENERATED_SOURCE and calibration["windows"] == CALIBRATION_QUESTIONS


def test_onnx_quantizes_every_arithmetic_op_with_16_bit_activations(exports):
    import onnx

    folder = exports / "onnx"
    manifest = read_manifest(folder)
    assert manifest["artifact"] == "onnx/model_a16w8.onnx"
    # transformers.js has no dtype for it: the folder does not point its loader at a file it cannot run.
    assert "transformers.js_config" not in json.loads((folder / "config.json").read_text())
    quantization = manifest["graph"]["quantization"]
    assert quantization["activations"].startswith("uint16") and quantization["weights"].startswith("uint8")
    assert quantization["embedding_tables"] >= 2  # words and positions (BERT: segments too), 8-bit like the weights
    # The ops int8-static keeps in float (the attention mask's Add, Softmax, LayerNorm, the down projections) are in.
    assert {"MatMul", "Add", "Softmax", "LayerNormalization"} <= set(quantization["integer_ops"])
    assert set(quantization["other_ops"]) <= DATA_MOVEMENT_ONNX
    graph = onnx.load(str(folder / manifest["artifact"])).graph
    zero_points = {t.name: t.data_type for t in graph.initializer}
    producers = {output: node.op_type for node in graph.node for output in node.output}
    activation_types = {(producers.get(node.input[0]), zero_points.get(node.input[2])) for node in graph.node
                        if node.op_type == "QuantizeLinear" and len(node.input) > 2}
    # Every activation 16-bit, but the rows the lookups return from the 8-bit tables (converted to 16-bit after).
    assert {dtype for op, dtype in activation_types if op != "Gather"} == {onnx.TensorProto.UINT16}
    stored = {t.data_type for t in graph.initializer if len(t.dims) == 2}
    assert onnx.TensorProto.UINT8 in stored and onnx.TensorProto.FLOAT not in stored  # weights and tables 8-bit


def test_tflite_computes_every_layer_with_int16_activations(exports):
    from ai_edge_litert.interpreter import Interpreter

    from pocketbert.export.formats.tflite import operator_dtypes

    folder = exports / "tflite"
    manifest = read_manifest(folder)
    quantization = manifest["graph"]["quantization"]
    assert quantization["recipe"] == "static_wi8_ai16" and quantization["activations"].startswith("int16")
    integer_ops = quantization["integer_ops"]
    # 2 layers: 6 linear layers each + the QA head; 2 attention products and 1 softmax each.
    assert integer_ops["FULLY_CONNECTED"] == 13 and integer_ops["BATCH_MATMUL"] == 4 and integer_ops["SOFTMAX"] == 2
    # ai-edge-quantizer has no 16-bit rule for the LayerNorm's SQUARED_DIFFERENCE: the manifest says it stays float.
    assert set(quantization["float_compute_ops"]) <= {"SQUARED_DIFFERENCE"}
    found = operator_dtypes((folder / "model.tflite").read_bytes())
    assert {inputs[:2] for (op, inputs, _) in found if op == "FULLY_CONNECTED"} == {("INT16", "INT8")}
    runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner(f"seq{LENGTH}")
    assert all(d["dtype"] == np.float32 for d in runner.get_output_details().values())  # logits stay float
    verdict = manifest["graph"]["task_library"]
    assert verdict["bert_question_answerer"] is False and "int16 RSQRT" in verdict["why_not"][0]


@pytest.mark.parametrize("format_name", ["onnx", "tflite"])
def test_own_calibration_file_from_the_command_line(tiny_distilbert_qa, tmp_path, format_name):
    manifest, squad = export_with_own_calibration(tiny_distilbert_qa, format_name, 96, tmp_path, precision="a16w8")
    calibration = manifest["graph"]["quantization"]["calibration"]
    calibration = calibration if format_name == "onnx" else calibration["seq96"]
    assert calibration["source"] == str(squad.resolve()) and calibration["questions"] == 3
    assert manifest["precision"] == "a16w8" and manifest["validation"]["ran"]


@pytest.mark.parametrize("format_name", ["executorch", "coreml"])
def test_formats_without_it_refuse_in_one_line(tiny_distilbert_qa, tmp_path, capsys, format_name):
    assert main(["export", str(tiny_distilbert_qa), "--format", format_name, "--precision", "a16w8",
                 "--out", str(tmp_path / "x")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("pocketbert: error: ") and f"format {format_name} has no precision 'a16w8'" in last
    assert not (tmp_path / "x").exists()
