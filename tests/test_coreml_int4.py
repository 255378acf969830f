"""Core ML --precision int4: 4-bit blockwise weights (blocks of 32) on a tiny DistilBERT (hidden 64, so every
linear layer and embedding table holds whole blocks), run by the reference evaluator off macOS (Core ML on macOS)
and compared with the original transformers model; manifest facts; size against int8; refusals.

One fixed length, as the demo exports (--seq-len 384): the converter then folds the position embeddings into a
constant added to the word embeddings, which our exporter blocks along the hidden axis (coremltools would not)."""
from __future__ import annotations

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")

from coremltools.converters.mil.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402
from test_coreml_evaluator_ops import evaluate_constant  # noqa: E402
from test_export_coreml import RUNTIME_HERE  # noqa: E402

from pocketbert.cli import main as cli_main  # noqa: E402
from pocketbert.export.api import export_model  # noqa: E402
from pocketbert.export.coreml_mil.evaluator import WEIGHTS_DIR  # noqa: E402

# Stated tolerance of an int4 artifact against the original fp32 model, on this random tiny model whose logits
# reach about 0.6: measured 0.041 (4-bit weights dominate; the fp16 export differs by ~1e-3). Every best start and
# end must agree.
INT4_MAX_ABS_DIFF = 0.1
LENGTH = 64


@pytest.fixture(scope="module")
def int4(tmp_path_factory, tiny_distilbert_qa):
    out = tmp_path_factory.mktemp("coreml-int4") / "int4"
    return out, export_model(str(tiny_distilbert_qa), "coreml", out, precision="int4", seq_lens=(LENGTH,))


def test_int4_validates_against_the_original_model(int4):
    _, manifest = int4
    validation = manifest["validation"]
    assert validation["ran"] is True and validation["runner"]["runtime"] == RUNTIME_HERE
    assert validation["lengths"] == [LENGTH] and validation["rows"] >= 3
    assert 0 < validation["max_abs_diff"] <= INT4_MAX_ABS_DIFF
    assert validation["argmax_agreement"] == {"start": 1.0, "end": 1.0}


def test_int4_manifest_states_bits_blocks_target_and_what_was_quantized(int4):
    _, manifest = int4
    graph = manifest["graph"]
    assert graph["deployment_target"] == "iOS18" and graph["specification_version"] == 9
    assert "int4 blockwise weights" in graph["deployment_target_reason"]
    compression = graph["weight_compression"]
    assert {k: compression[k] for k in ("bits", "dtype", "granularity", "block_size", "mode")} == {
        "bits": 4, "dtype": "int4", "granularity": "per_block", "block_size": 32, "mode": "linear_symmetric"}
    # 2 layers x 6 linear weights, the word embeddings (gathered) and the position embeddings (a constant added);
    # the 2 x 64 QA head is below coremltools' 2048-element threshold and stays fp16.
    assert compression["consumers"] == {"add": 1, "gather": 1, "matmul": 12}
    assert compression["tensors"] == compression["weights_above_threshold"] == 14
    assert len(compression["blocked_along_last_axis"]) == 1
    assert graph["op_counts"]["constexpr_blockwise_shift_scale"] == 14


def test_int4_package_holds_4_bit_blocks_of_32_that_the_evaluator_expands_like_coremltools(int4):
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    from pocketbert.export.coreml_mil import load_program

    out, manifest = int4
    package = out / manifest["artifact"]
    spec = ct.utils.load_spec(str(package))
    program = load_milproto(spec, spec.specificationVersion, file_weights_dir=str(package / WEIGHTS_DIR))
    ours = load_program(package).constants
    compressed = [op for op in program.functions["main"].operations if op.op_type == "constexpr_blockwise_shift_scale"]
    assert len(compressed) == 14
    for op in compressed:
        data, scale = op.data.val, op.scale.val
        assert types.builtin_to_string(op.data.dtype) == "int4" and -8 <= data.min() and data.max() <= 7
        assert op.offset is None  # symmetric
        blocks = [d // s for d, s in zip(data.shape, scale.shape)]
        assert sorted(blocks) == [1] * (data.ndim - 1) + [32], (op.name, data.shape, scale.shape)
        if [child.op_type for child in op.outputs[0].child_ops] == ["add"]:  # the position embeddings
            assert blocks[-1] == 32
        expected = op.decompress(data, scale, None).astype(np.float32)
        np.testing.assert_array_equal(ours[op.outputs[0].name], expected, err_msg=op.name)


def test_int4_blockwise_with_an_int4_offset_matches_coremltools():
    """The affine form (mode "linear") stores an int4 offset per block; our op subtracts it before scaling."""
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_blockwise_shift_scale as op

    rng = np.random.default_rng(0)
    data = rng.integers(-8, 8, (4, 64)).astype(types.np_int4_dtype)
    scale = (rng.random((4, 2)) * 0.01 + 1e-4).astype(np.float16)
    offset = rng.integers(-8, 8, (4, 2)).astype(types.np_int4_dtype)
    got = evaluate_constant(lambda: mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset))
    np.testing.assert_array_equal(got, op.decompress(data, scale, offset).astype(np.float32))


def test_int4_weights_are_smaller_than_int8(int4, tmp_path, tiny_distilbert_qa):
    out4, manifest4 = int4
    out8 = tmp_path / "int8"
    manifest8 = export_model(str(tiny_distilbert_qa), "coreml", out8, precision="int8", seq_lens=(LENGTH,))
    weights = {bits: (out / m["artifact"] / WEIGHTS_DIR / "weight.bin").stat().st_size
               for bits, out, m in ((4, out4, manifest4), (8, out8, manifest8))}
    # 4 bits + an fp16 scale per 32 values (4.5 bits) against 8 bits + an fp16 scale per row.
    assert weights[4] < 0.65 * weights[8]
    assert manifest4["file_bytes"] < manifest8["file_bytes"]


def test_int4_below_ios18_is_refused_in_one_line(tmp_path, tiny_distilbert_qa, capsys):
    out = tmp_path / "old"
    code = cli_main(["export", str(tiny_distilbert_qa), "--format", "coreml", "--precision", "int4",
                     "--seq-len", "32", "--deployment-target", "iOS17", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert err[-1].startswith("pocketbert: error: Core ML before iOS18/macOS15 has no 4-bit blockwise weights")
    assert "--deployment-target iOS18" in err[-1] and "Traceback" not in "\n".join(err)
