"""TFLite / LiteRT exporter: fixed-length signatures, fp32 / fp16 / int8, validated in the LiteRT interpreter."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pocketbert.cli import main
from pocketbert.errors import PocketbertError
from pocketbert.export.api import export_model
from pocketbert.export.registry import get_format
from pocketbert.manifest import read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.reference import validation_inputs

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

LENGTHS = (32, 64)
# Loose bounds that still catch a broken artifact (NaN, garbage) on the tiny random model.
QUANTIZED_MAX_DIFF = {"fp16": 1e-2, "int8": 0.1}


@pytest.fixture(scope="module")
def distilbert_exports(tiny_distilbert_qa, tmp_path_factory):
    """One tiny DistilBERT folder per precision, exported once for the whole module."""
    root = tmp_path_factory.mktemp("tflite")
    folders = {}
    for precision in ("fp32", "fp16", "int8"):
        folders[precision] = root / precision
        export_model(str(tiny_distilbert_qa), "tflite", folders[precision], precision=precision, seq_lens=LENGTHS)
    return folders


def load_runner(folder, threads=1):
    manifest = read_manifest(folder)
    return get_format("tflite").load(folder / manifest["artifact"], manifest, threads=threads), manifest


def interpreter_for(folder):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(folder / "model.tflite"), num_threads=1)


def test_fp32_matches_pytorch_at_every_signature(distilbert_exports):
    manifest = read_manifest(distilbert_exports["fp32"])
    validation = manifest["validation"]
    assert validation["ran"] and validation["passed"] is True
    assert validation["lengths"] == list(LENGTHS)
    assert all(diff <= 1e-4 for diff in validation["max_abs_diff_per_length"].values())
    assert validation["argmax_agreement"] == {"start": 1.0, "end": 1.0}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_quantized_precisions_report_diff_and_agreement(distilbert_exports, precision):
    manifest = read_manifest(distilbert_exports[precision])
    validation = manifest["validation"]
    assert validation["ran"] and validation["passed"] is None and validation["tolerance"] is None
    assert set(validation["max_abs_diff_per_length"]) == {str(n) for n in LENGTHS}
    assert 0 < validation["max_abs_diff"] < QUANTIZED_MAX_DIFF[precision]
    assert 0.0 <= validation["argmax_agreement"]["start"] <= 1.0
    assert 0.0 <= validation["argmax_agreement"]["end"] <= 1.0
    recipe = manifest["graph"]["quantization"]
    assert recipe["tool"] == "ai-edge-quantizer" and recipe["rules"]
    assert recipe["recipe"] == {"fp16": "weight_only_fp16", "int8": "dynamic_wi8_afp32"}[precision]


def test_quantized_files_are_smaller(distilbert_exports):
    sizes = {p: read_manifest(folder)["file_bytes"] for p, folder in distilbert_exports.items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def test_fp16_stores_float16_weights(distilbert_exports):
    interpreter = interpreter_for(distilbert_exports["fp16"])
    assert any(t["dtype"] == np.float16 for t in interpreter.get_tensor_details())
    assert "DEQUANTIZE" in read_manifest(distilbert_exports["fp16"])["graph"]["op_histogram"]


def test_signatures_and_named_int32_inputs(distilbert_exports):
    interpreter = interpreter_for(distilbert_exports["fp32"])
    signatures = interpreter.get_signature_list()
    assert set(signatures) == {"seq32", "seq64"}
    for name, length in (("seq32", 32), ("seq64", 64)):
        # token_type_ids too: the Task Library feeds it (DistilBERT ignores it).
        assert sorted(signatures[name]["inputs"]) == ["attention_mask", "input_ids", "token_type_ids"]
        assert sorted(signatures[name]["outputs"]) == ["end_logits", "start_logits"]
        details = interpreter.get_signature_runner(name).get_input_details()
        assert all(d["dtype"] == np.int32 and list(d["shape"]) == [1, length] for d in details.values())


def test_manifest_records_graph_facts(distilbert_exports):
    manifest = read_manifest(distilbert_exports["fp32"])
    graph = manifest["graph"]
    assert set(graph["signatures"]) == {"seq32", "seq64"}
    assert graph["flex_ops"] == [] and graph["custom_ops"] == []
    assert {"FULLY_CONNECTED", "SOFTMAX", "EMBEDDING_LOOKUP"} <= set(graph["op_histogram"])
    assert graph["operators"] == sum(graph["op_histogram"].values())
    assert graph["quantization"] is None
    assert [i["dtype"] for i in manifest["inputs"]] == ["int32", "int32", "int32"]
    assert graph["ignored_inputs"] == ["token_type_ids"]
    assert graph["op_versions"]["FULLY_CONNECTED"] >= 1 and set(graph["op_versions"]) == set(graph["op_histogram"])
    assert manifest["sequence"] == {"dynamic": False, "min": 32, "max": 64, "lengths": list(LENGTHS)}


def test_runner_feeds_int64_batches_and_matches_validation(distilbert_exports, tiny_distilbert_qa):
    from pocketbert.export.task import exportable
    from pocketbert.modeling import load_qa_model
    from pocketbert.reference import torch_reference

    runner, _ = load_runner(distilbert_exports["fp32"])
    assert runner.lengths == LENGTHS and runner.input_names == ("input_ids", "attention_mask", "token_type_ids")
    inputs = validation_inputs(load_tokenizer(tiny_distilbert_qa), runner.input_names, 64)
    rows = len(inputs["input_ids"])
    assert inputs["input_ids"].dtype == np.int64 and rows >= 2
    start, end = runner(inputs)
    ref_start, ref_end = torch_reference(exportable(load_qa_model(tiny_distilbert_qa).model), inputs)
    assert start.shape == end.shape == (rows, 64)
    assert np.abs(start - ref_start).max() <= 1e-4 and np.abs(end - ref_end).max() <= 1e-4


def test_runner_refuses_a_length_that_is_not_a_signature(distilbert_exports):
    runner, _ = load_runner(distilbert_exports["int8"])
    ids = np.full((1, 40), 1012, dtype=np.int64)
    with pytest.raises(PocketbertError, match=r"lengths \[32, 64\], not 40"):
        runner({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})


def test_bert_type_model_takes_token_type_ids(tiny_bert_qa, tmp_path):
    manifest = export_model(str(tiny_bert_qa), "tflite", tmp_path / "bert", seq_lens=(48,))
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["graph"]["signatures"]["seq48"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["graph"]["ignored_inputs"] == []
    assert manifest["validation"]["passed"] is True and manifest["validation"]["max_abs_diff"] <= 1e-4
    signature = interpreter_for(tmp_path / "bert").get_signature_list()["seq48"]
    assert sorted(signature["inputs"]) == ["attention_mask", "input_ids", "token_type_ids"]


def test_dynamic_length_is_refused_in_one_line(tiny_distilbert_qa, tmp_path, capsys):
    with pytest.raises(PocketbertError, match="needs fixed lengths"):
        export_model(str(tiny_distilbert_qa), "tflite", tmp_path / "api", dynamic=True)
    code = main(["export", str(tiny_distilbert_qa), "--format", "tflite", "--dynamic", "--out", str(tmp_path / "cli")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "--seq-len" in error
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_flex_ops_are_refused_and_nothing_is_written(tiny_distilbert_qa, tmp_path, monkeypatch):
    from pocketbert.export.formats import tflite

    # No small BERT needs Flex ops after conversion, so stand in for one that does.
    monkeypatch.setattr(tflite, "operator_inventory",
                        lambda model: (Counter({"FULLY_CONNECTED": 1}), ["FlexErf"], {"FULLY_CONNECTED": 1}))
    with pytest.raises(PocketbertError, match=r"Flex ops \['FlexErf'\]"):
        export_model(str(tiny_distilbert_qa), "tflite", tmp_path / "flex", seq_lens=(32,))
    assert list(tmp_path.iterdir()) == []


def test_operator_inventory_reads_builtin_names(distilbert_exports):
    from pocketbert.export.formats.tflite import operator_inventory

    histogram, custom, _ = operator_inventory((distilbert_exports["int8"] / "model.tflite").read_bytes())
    assert custom == [] and histogram["FULLY_CONNECTED"] > 0 and histogram["SOFTMAX"] > 0


def test_task_library_length_comes_first():
    """The Task Library runs subgraph 0 with 384 tokens, so that signature is converted first."""
    from pocketbert.export.formats.tflite import signature_order

    assert signature_order((64, 128, 384)) == [384, 64, 128]
    assert signature_order((32, 64)) == [32, 64]
