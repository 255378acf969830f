"""ONNX --precision int4: 4-bit blockwise linear layers and embeddings, run by ONNX Runtime and validated against the
original transformers model."""
from __future__ import annotations

import json

import pytest

from pocketbert.export.api import export_model
from pocketbert.manifest import read_manifest


@pytest.fixture(scope="module")
def onnx_int4(tiny_distilbert_qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-int4") / "int4"
    export_model(str(tiny_distilbert_qa), "onnx", out, precision="int4", seq_lens=(32, 64))
    return out


def test_int4_runs_4bit_kernels_and_agrees_with_the_original_model(onnx_int4):
    manifest = read_manifest(onnx_int4)
    assert manifest["artifact"] == "onnx/model_q4.onnx"
    assert json.loads((onnx_int4 / "config.json").read_text())["transformers.js_config"] == {"dtype": "q4"}
    graph = manifest["graph"]
    # Linear layers and embeddings are 4-bit: no float MatMul with a constant weight and no float Gather left.
    assert {"MatMulNBits", "GatherBlockQuantized"} <= set(graph["op_types"]) and "Gather" not in graph["op_types"]
    assert graph["quantization"]["block_size"] == 32
    assert graph["quantization"]["embeddings"].startswith("int4, 2 tables")  # word and position embeddings
    validation = manifest["validation"]
    assert validation["ran"] and validation["runtime"] == "onnxruntime"
    assert validation["passed"] is None and validation["tolerance"] is None  # no fp32 tolerance for 4-bit
    assert validation["max_abs_diff"] < 0.5
    # The random tiny model's logits are nearly flat, so a row may flip; 5 of 6 start and 6 of 6 end agree here.
    assert min(validation["argmax_agreement"].values()) >= 2 / 3


def test_int4_is_smaller_than_int8(onnx_int4, tiny_distilbert_qa, tmp_path):
    int8 = export_model(str(tiny_distilbert_qa), "onnx", tmp_path / "int8", precision="int8", seq_lens=(32,))
    assert read_manifest(onnx_int4)["file_bytes"] < 0.7 * int8["file_bytes"]
