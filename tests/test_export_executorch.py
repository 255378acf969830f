"""ExecuTorch exporter on tiny checkpoints: XNNPACK fp32/int8, the Core ML delegate, graph facts, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("executorch")

from pocketbert.cli import main  # noqa: E402
from pocketbert.errors import PocketbertError  # noqa: E402
from pocketbert.export.api import export_model  # noqa: E402
from pocketbert.export.formats.executorch import ExecuTorchExporter  # noqa: E402
from pocketbert.export.task import exportable  # noqa: E402
from pocketbert.manifest import read_manifest  # noqa: E402
from pocketbert.modeling import load_qa_model  # noqa: E402
from pocketbert.reference import VALIDATION_EXAMPLES, torch_reference, validation_inputs  # noqa: E402


@pytest.fixture(scope="module")
def fp32_dynamic(tiny_distilbert_qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("et") / "fp32-dynamic"
    return out, export_model(str(tiny_distilbert_qa), "executorch", out, dynamic=True)


def test_fp32_dynamic_matches_pytorch_at_several_lengths(fp32_dynamic):
    _, manifest = fp32_dynamic
    validation = manifest["validation"]
    assert validation["ran"] and validation["passed"]
    assert validation["lengths"] == [16, 128, 384, 512]
    assert validation["max_abs_diff"] <= 1e-4
    assert manifest["sequence"]["dynamic"] and manifest["inputs"][0]["shape"] == [1, "seq"]


def test_runner_takes_lengths_the_validation_did_not_use(fp32_dynamic, tiny_distilbert_qa):
    out, manifest = fp32_dynamic
    loaded = load_qa_model(str(tiny_distilbert_qa))
    module = exportable(loaded.model)
    runner = ExecuTorchExporter().load(out / manifest["artifact"], read_manifest(out), threads=1)
    inputs = validation_inputs(loaded.tokenizer, module.input_names, 77)  # one row per pair: fed row by row
    start, end = runner(inputs)
    ref_start, ref_end = torch_reference(module, inputs)
    assert start.shape == ref_start.shape == (len(VALIDATION_EXAMPLES), 77)
    assert max(np.abs(start - ref_start).max(), np.abs(end - ref_end).max()) <= 1e-4


def test_graph_is_delegated_to_xnnpack_almost_entirely(fp32_dynamic):
    graph = fp32_dynamic[1]["graph"]
    # Stock lowering: one segment per layer norm / mask op gap. Ours: embeddings and the output split only.
    assert graph["delegate_segments"] <= 2
    assert graph["sequence"] == {"range": [8, 512]}
    left = graph["non_delegated_op_counts"]
    assert not any("layer_norm" in op or "where" in op or "expand" in op or "view" in op for op in left)
    assert graph["total_ops"] == graph["delegated_ops"] + graph["non_delegated_ops"]


def test_bert_with_token_types_static_length(tiny_bert_qa, tmp_path):
    manifest = export_model(str(tiny_bert_qa), "executorch", tmp_path / "bert", seq_lens=(64,))
    assert manifest["validation"]["passed"] and manifest["validation"]["lengths"] == [64]
    assert manifest["graph"]["sequence"] == {"static": 64}
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["graph"]["delegate_segments"] <= 2


def test_int8_runs_and_agrees_with_fp32(tiny_distilbert_qa, tmp_path):
    manifest = export_model(str(tiny_distilbert_qa), "executorch", tmp_path / "int8", precision="int8",
                            seq_lens=(64, 128))
    validation = manifest["validation"]
    assert validation["ran"] and validation["passed"] is None  # no fp32 tolerance for int8
    assert validation["max_abs_diff"] < 0.1
    assert validation["argmax_agreement"]["start"] >= 0.5 and validation["argmax_agreement"]["end"] >= 0.5
    assert manifest["graph"]["quantization"]["embedding_layers"] == 2
    assert manifest["graph"]["delegate_segments"] <= 2


def test_coreml_builds_and_is_checked_by_the_core_ml_reference_evaluator(tiny_distilbert_qa, tmp_path):
    manifest = export_model(str(tiny_distilbert_qa), "executorch", tmp_path / "coreml", backend="coreml",
                            precision="fp16", seq_lens=(32,))
    assert (tmp_path / "coreml" / "model.pte").stat().st_size > 0
    assert manifest["backend"] == "coreml" and manifest["graph"]["delegate_segments"] == 1
    validation = manifest["validation"]  # the delegate cannot run here; its ML Program payload is evaluated
    assert validation["ran"] is True and validation["passed"] is None
    assert validation["runner"]["runtime"] == "reference evaluator (numpy), not Core ML"


@pytest.mark.parametrize("backend,precision", [("xnnpack", "fp16"), ("coreml", "int8")])
def test_precision_backend_pairs_that_do_not_exist(tiny_distilbert_qa, tmp_path, backend, precision):
    with pytest.raises(PocketbertError, match="no precision"):
        export_model(str(tiny_distilbert_qa), "executorch", tmp_path / "x", backend=backend, precision=precision,
                     seq_lens=(32,))
    assert not (tmp_path / "x").exists()


def test_cli_export(tiny_distilbert_qa, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["export", str(tiny_distilbert_qa), "--format", "executorch", "--seq-len", "48", "--out", str(out)])
    assert code == 0
    assert "executorch/xnnpack/fp32" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "executorch" and manifest["validation"]["passed"]
    assert (out / "model.pte").is_file() and (out / "tokenizer.json").is_file()


@pytest.mark.parametrize("bias", [True, False])
def test_delegable_layer_norm_equals_layer_norm_with_and_without_bias(bias):
    """ModernBERT's norms have no bias; the decomposed norm must accept that."""
    import torch

    from pocketbert.export.formats.executorch import DelegableLayerNorm

    norm = torch.nn.LayerNorm(16, bias=bias)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(2, 5, 16)
    assert torch.allclose(DelegableLayerNorm(norm)(x), norm(x), atol=1e-5)


def test_int8_embedding_keeps_a_weight_for_code_that_reads_it():
    """DeBERTa-v2 reads rel_embeddings.weight directly instead of calling the embedding."""
    import torch

    from pocketbert.export.formats.executorch_quant import Int8RowEmbedding

    embedding = torch.nn.Embedding(10, 8)
    quantized = Int8RowEmbedding(embedding)
    assert quantized.weight.shape == embedding.weight.shape
    assert torch.allclose(quantized.weight, embedding.weight, atol=float(quantized.row_scales.max()))
    ids = torch.tensor([[1, 4, 9]])
    assert torch.allclose(quantized(ids), quantized.weight[ids])
