"""The ONNX graph post-pass (export/formats/onnx_graph.py): our ONNX files are fast under ONNX Runtime's DEFAULT session
options, as optimum's pipeline, transformers.js and onnxruntime-web open them. Graph properties only, no timing: ONNX
Runtime's default optimisation leaves no SkipLayerNormalization, and no Softmax input lies further than the floor below
its row maximum, so exp never computes in subnormal floats."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pocketbert.export.api import export_model
from pocketbert.export.formats.onnx_graph import SOFTMAX_FLOOR, default_session_facts, rewrite
from pocketbert.manifest import read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.reference import validation_inputs

HIDDEN, HEADS, SEQ, HEAD_DIM = 16, 2, 12, 8
EXP_NORMAL = 87.0  # exp(-x) is a normal float32 for x below this


@pytest.fixture(scope="module")
def exported(tiny_distilbert_qa, tmp_path_factory):
    """precision -> the tiny DistilBERT QA exported to ONNX at that precision (32 and 64 tokens validated)."""
    made = {}

    def get(precision: str):
        if precision not in made:
            made[precision] = tmp_path_factory.mktemp("onnx-graph") / precision
            export_model(str(tiny_distilbert_qa), "onnx", made[precision], precision=precision, seq_lens=(32, 64))
        return made[precision]

    return get


def default_optimised_ops(model_or_path, tmp_path) -> list[str]:
    """Op types of the graph ONNX Runtime runs when opened with its default SessionOptions (what an app gets)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    options.log_severity_level = 3  # its warning about saving a hardware-specific graph
    source = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


def attention_block() -> onnx.ModelProto:
    """q.kT + additive mask -> Softmax, and x + residual -> LayerNormalization: the patterns the pass rewrites."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(1, 0.1, HIDDEN).astype(np.float32), "gamma"),
               numpy_helper.from_array(rng.normal(0, 0.1, HIDDEN).astype(np.float32), "beta")]
    nodes = [helper.make_node("MatMul", ["q", "k_t"], ["scores"]),
             helper.make_node("Add", ["scores", "mask"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
             helper.make_node("Add", ["x", "residual"], ["summed"]),
             helper.make_node("LayerNormalization", ["summed", "gamma", "beta"], ["normed"], axis=-1, epsilon=1e-12)]
    tensor = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(
        nodes, "block",
        [tensor("q", ["batch", HEADS, SEQ, HEAD_DIM]), tensor("k_t", ["batch", HEADS, HEAD_DIM, SEQ]),
         tensor("mask", ["batch", 1, 1, SEQ]), tensor("x", ["batch", SEQ, HIDDEN]), tensor("residual", ["batch", SEQ, HIDDEN])],
        [tensor("probs", ["batch", HEADS, SEQ, SEQ]), tensor("normed", ["batch", SEQ, HIDDEN])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    return onnx.shape_inference.infer_shapes(model)  # value_info, as the dynamo exporter writes it


def block_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.zeros((2, 1, 1, SEQ), np.float32)
    mask[0, ..., 5:] = -10000.0  # a padded window beside a full one
    return {"q": rng.normal(0, 2, (2, HEADS, SEQ, HEAD_DIM)).astype(np.float32),
            "k_t": rng.normal(0, 2, (2, HEADS, HEAD_DIM, SEQ)).astype(np.float32), "mask": mask,
            "x": rng.normal(0, 1, (2, SEQ, HIDDEN)).astype(np.float32),
            "residual": rng.normal(0, 1, (2, SEQ, HIDDEN)).astype(np.float32)}


def run(model: onnx.ModelProto, feed: dict, outputs: list[str] | None = None) -> list[np.ndarray]:
    if outputs:
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, feed)


def softmax_inputs(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    return run(model, feed, [n.input[0] for n in model.graph.node if n.op_type == "Softmax"])


def test_the_fusion_the_pass_avoids_happens_by_default(tmp_path):
    assert "SkipLayerNormalization" in default_optimised_ops(attention_block(), tmp_path)


@pytest.mark.parametrize("fold", [True, False])
def test_rewrite_keeps_the_outputs_and_removes_what_defaults_make_slow(fold, tmp_path):
    feed = block_inputs()
    rewritten = attention_block()
    facts = rewrite(rewritten, fold=fold)
    onnx.checker.check_model(rewritten, full_check=True)
    assert (facts["softmax_folds"], facts["softmax_floors"], facts["residual_sums"]) == ((1, 0, 1) if fold else (0, 1, 1))
    ops = default_optimised_ops(rewritten, tmp_path)
    assert "SkipLayerNormalization" not in ops and {"Sum", "LayerNormalization", "Softmax"} <= set(ops)
    producers = {o: n.op_type for n in rewritten.graph.node for o in n.output}
    softmax_input = next(n.input[0] for n in rewritten.graph.node if n.op_type == "Softmax")
    assert producers[softmax_input] == ("MatMul" if fold else "Max")  # the fold takes the mask's Add away
    # Float rounding only: the fused SkipLayerNormalization kernel rounds a little differently from LayerNormalization.
    for before, after in zip(run(attention_block(), feed), run(rewritten, feed)):
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    probs = run(rewritten, feed)[0]
    assert np.all(probs[0, ..., 5:] < 1e-16)  # padded keys still get no weight
    (x,) = softmax_inputs(rewritten, feed)
    gap = x.max(axis=-1, keepdims=True) - x
    assert gap.max() < EXP_NORMAL  # every exp argument, padded keys included, gives a normal float
    if fold:  # padded keys sit exactly at the floor: key 0's score, SOFTMAX_FLOOR lower
        np.testing.assert_allclose(x[0, ..., 5:], np.broadcast_to(x[0, ..., :1] - SOFTMAX_FLOOR, x[0, ..., 5:].shape),
                                   rtol=0, atol=1e-5)
    else:
        assert gap.max() <= SOFTMAX_FLOOR + 1e-3


def test_each_precision_gets_its_rewrite(tmp_path):
    path = tmp_path / "block.onnx"
    for precision, expected in (("fp32", (1, 0)), ("int8", (1, 0)), ("int4", (1, 0)), ("int8-static", (0, 1))):
        onnx.save(attention_block(), str(path))
        facts = default_session_facts(path, precision)["default_session"]
        assert (facts["softmax_folds"], facts["softmax_floors"], facts["residual_sums"]) == (*expected, 1), precision
    onnx.save(attention_block(), str(path))
    before = path.read_bytes()
    assert default_session_facts(path, "a16w8") == {} and path.read_bytes() == before  # QDQ for NPUs: left alone


def test_rewrite_leaves_a_bias_add_and_an_unknown_softmax_alone():
    model = attention_block()
    model.graph.node[3].input[1] = "gamma"  # x + a constant: a bias, not a residual
    del model.graph.value_info[:]  # the Softmax input's type is no longer known
    facts = rewrite(model)
    assert facts["residual_sums"] == facts["softmax_folds"] == facts["softmax_floors"] == 0


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_exported_graph_has_no_skip_layer_norm_under_default_options(exported, precision, tmp_path):
    folder = exported(precision)
    manifest = read_manifest(folder)
    rewrites = manifest["graph"]["default_session"]
    layers = 2  # the tiny model's; each has two residual LayerNorms, and the embeddings one more
    assert (rewrites["softmax_folds"], rewrites["softmax_floors"], rewrites["residual_sums"]) == (layers, 0, 2 * layers + 1)
    assert manifest["validation"]["ran"]
    ops = default_optimised_ops(folder / manifest["artifact"], tmp_path)
    assert "SkipLayerNormalization" not in ops and ops.count("LayerNormalization") == 2 * layers + 1


def test_exported_softmax_inputs_keep_exp_normal_on_padded_windows(exported):
    folder = exported("fp32")
    manifest = read_manifest(folder)
    feed = validation_inputs(load_tokenizer(folder), [i["name"] for i in manifest["inputs"]], 64)
    padded = feed["attention_mask"][:, None, None, :] == 0
    assert padded.any()  # real windows, padded
    for x in softmax_inputs(onnx.load(str(folder / manifest["artifact"])), feed):
        gap = x.max(axis=-1, keepdims=True) - x
        assert gap.max() < EXP_NORMAL  # exp of every argument is a normal float: no subnormal arithmetic in Softmax
        floor = np.broadcast_to(x[..., :1] - SOFTMAX_FLOOR, x.shape)  # padded keys sit at key 0's score - the floor
        np.testing.assert_allclose(x[np.broadcast_to(padded, x.shape)], floor[np.broadcast_to(padded, x.shape)],
                                   rtol=0, atol=1e-4)
