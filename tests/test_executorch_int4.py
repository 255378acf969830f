"""ExecuTorch --precision int4: 4-bit grouped linear layers (torchao 8da4w lowered to XNNPACK) and 4-bit embeddings,
run by the ExecuTorch runtime and validated against the original transformers model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketbert.cli import main
from pocketbert.export.api import export_model
from pocketbert.export.formats.executorch_quant import INT4_GROUP_SIZE, Int4GroupEmbedding, Int8RowEmbedding, replace_embeddings
from pocketbert.export.registry import load_artifact
from pocketbert.manifest import read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.reference import validation_inputs


@pytest.fixture(scope="module")
def executorch_int4(tiny_distilbert_qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("executorch-int4") / "int4"
    export_model(str(tiny_distilbert_qa), "executorch", out, precision="int4", seq_lens=(32, 64))
    return out


def test_int4_lowers_to_xnnpack_and_agrees_with_the_original_model(executorch_int4):
    manifest = read_manifest(executorch_int4)
    assert manifest["precision"] == "int4" and manifest["artifact"] == "model.pte"
    quantization = manifest["graph"]["quantization"]
    # 2 layers x 6 linears + the QA head, all 4-bit (widths 64 and 128); word and position tables 4-bit.
    assert quantization["linear_layers"] == 13 and quantization["linear_layers_int8"] == 0
    assert quantization["embedding_layers"] == 2 and quantization["embedding_layers_int8"] == 0
    assert quantization["group_size"] == INT4_GROUP_SIZE
    assert manifest["graph"]["delegate_segments"] <= 2  # the 4-bit GEMMs and the nibble unpacking run in XNNPACK
    validation = manifest["validation"]
    assert validation["ran"] and validation["runtime"] == "executorch"
    assert validation["reference"].startswith("transformers DistilBertForQuestionAnswering, unmodified")
    assert validation["passed"] is None and validation["tolerance"] is None  # no fp32 tolerance for 4-bit
    assert validation["max_abs_diff"] < 0.2
    # The random tiny model's logits are nearly flat, so a row may flip.
    assert min(validation["argmax_agreement"].values()) >= 2 / 3


def test_int4_embedding_table_takes_half_a_byte_per_weight(executorch_int4, tiny_distilbert_qa):
    tokenizer = load_tokenizer(tiny_distilbert_qa)
    int8_table_bytes = len(tokenizer) * 64  # the word table alone in int8: vocab x hidden bytes
    assert read_manifest(executorch_int4)["file_bytes"] < 0.75 * int8_table_bytes


def test_int4_artifact_runs_in_the_executorch_runtime_at_lengths_in_its_range(executorch_int4, tiny_distilbert_qa):
    manifest = read_manifest(executorch_int4)
    runner = load_artifact(executorch_int4, manifest)
    for length in (32, 48, 64):
        inputs = validation_inputs(load_tokenizer(tiny_distilbert_qa), runner.input_names, length)
        start, end = runner(inputs)
        assert start.shape == end.shape == inputs["input_ids"].shape and np.isfinite(start).all()


def test_int4_refused_on_the_core_ml_delegate_in_one_line(tiny_distilbert_qa, tmp_path, capsys):
    code = main(["export", str(tiny_distilbert_qa), "--format", "executorch", "--backend", "coreml",
                 "--precision", "int4", "--seq-len", "32", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "no precision 'int4'" in err and "--backend xnnpack" in err
    assert not (tmp_path / "x").exists()


def test_int4_embedding_rounds_each_group_to_16_levels():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(10, 2 * INT4_GROUP_SIZE, padding_idx=0)
    quantized = Int4GroupEmbedding(embedding)
    assert quantized.packed.dtype == torch.uint8 and quantized.packed.shape == (10, INT4_GROUP_SIZE)
    ids = torch.tensor([[0, 3, 9]])
    rows = quantized(ids)
    assert torch.equal(rows[0, 0], torch.zeros(2 * INT4_GROUP_SIZE))  # the padding row stays exactly 0
    groups = embedding.weight.detach().reshape(10, 2, INT4_GROUP_SIZE)
    step = groups.abs().amax(-1, keepdim=True) / 7  # half a step is the most rounding may move a value
    error = (quantized.weight - embedding.weight.detach()).abs().reshape(10, 2, INT4_GROUP_SIZE)
    assert (error <= step / 2 + 1e-3 * step).all()
    assert torch.equal(rows, quantized.weight[ids])


def test_tables_too_narrow_for_4_bit_groups_keep_int8_rows():
    model = torch.nn.Module()
    model.wide, model.narrow = torch.nn.Embedding(5, INT4_GROUP_SIZE), torch.nn.Embedding(5, 24)
    assert replace_embeddings(model, bits=4) == {"int4": 1, "int8": 1}
    assert isinstance(model.wide, Int4GroupEmbedding) and isinstance(model.narrow, Int8RowEmbedding)


@pytest.mark.parametrize("architecture", ["deberta-v2", "modernbert"])
def test_int4_for_architectures_with_their_own_code_paths(tiny_checkpoints, tmp_path, architecture):
    """DeBERTa-v2 reads its relative-position table's .weight instead of calling it; ModernBERT has bias-free linears
    and sliding-window layers (64 tokens > its 16-token window)."""
    manifest = export_model(str(tiny_checkpoints(architecture)), "executorch", tmp_path / "int4", precision="int4",
                            seq_lens=(64,))
    validation = manifest["validation"]
    # As for int8 in tests/test_architectures.py: a bounded difference; argmax agreement is recorded, not asserted
    # (these random tiny models' logits are nearly flat, and DeBERTa-v2's start argmax moved in 2 of 3 rows).
    assert validation["ran"] and validation["passed"] is None and validation["max_abs_diff"] < 0.5


def test_bench_judges_int4_against_the_int8_gemm_peak():
    from pocketbert.bench.measure import peak_precision

    assert peak_precision("int4") == "int8"  # XNNPACK multiplies int8 activations by the 4-bit weights
