"""A post-pass on the exported ONNX graph so that ONNX Runtime runs it fast under its DEFAULT session options, the way
optimum's pipeline, transformers.js and onnxruntime-web open a folder (they never read the manifest's
`runtime_settings`). The rewrites change the logits by float rounding only (the export's validation still compares them
with the original transformers model):

- No subnormal floats in Softmax. The attention mask's -10000 sends every padded key's score to the bottom of ONNX
  Runtime's exp range, where its Softmax kernel computes in subnormal floats (none of its outputs is subnormal: it
  happens inside the kernel). On a 2-core AVX-512 Xeon a [1, 12, 384, 384] Softmax with a padded window's mask took
  6.9 ms instead of 0.56 ms, and a padded DistilBERT window (seq 384) ran 1.14x (fp32) and 1.65x (int8) slower than
  with subnormals flushed (`session.set_denormal_as_zero`, which apps that ignore the manifest do not set). Masked
  keys are instead put at a per-row floor, SOFTMAX_FLOOR below a score of their own row: each exp argument stays above
  -87 (a normal float), and a floored key weighs at most e^-40 = 4e-18 of that score's key, which an fp32 sum cannot
  tell from 0 (its epsilon is 6e-8).
  * Fold (attention scores + a per-key mask or bias): scores = q.k + mask becomes one MatMul of q extended by [1, floor]
    and k extended by [bias, masked]: kept keys get q.k + bias as before, masked keys exactly the floor, which is the
    score of key 0 (the [CLS]/<s> token of a right-padded window) minus SOFTMAX_FLOOR. The mask's Add disappears, so
    the graph is no slower than before even where subnormals are flushed. A row whose best key scores more than
    87 - 40 above key 0 keeps subnormal floats (correct, only slower); a window padded on the left has key 0 masked,
    so its floor is -10000 below and it runs as before. A window with no real token at all (batch filler) attends
    uniformly instead of by its padding's scores: its logits mean nothing either way.
  * Floor (any other float Softmax over the last axis, and every one where folding would hurt the precision's
    quantizer): x -> Max(x, ReduceMax(x) - SOFTMAX_FLOOR), two more passes over the scores.
- Residual Add as Sum. ONNX Runtime's SkipLayerNormFusion (on by default) merges the residual Add before each
  LayerNormalization into its SkipLayerNormalization kernel, which on that Xeon took 1.32 ms where Add +
  LayerNormalization took 0.27 ms ([1, 384, 768]). The fusion matches only an Add; ONNX's Sum of the same two inputs
  computes the same float sums and is not fused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketbert.errors import require_module

# A floored key weighs e^-40 = 4.2e-18 of the key its floor is taken from: 512 such keys add 2e-15 to a row's weights.
# 40 also leaves 87 - 40 = 47 for the row's best key to score above key 0 before exp goes subnormal (fold).
SOFTMAX_FLOOR = 40.0
# A bias at or below this masks its key (fold): e^-1000 is already 0 in fp32. The export's own mask is -10000.
MASKED_BELOW = -1000.0
# Guards the fold's floor when key 0's bias is -inf: its column is multiplied by 0 for kept keys, and -inf * 0 is NaN.
LOWEST_FLOOR = -1e30
FLOAT = 1  # onnx.TensorProto.FLOAT
# What each precision's fp32 graph gets before its quantizer reads it. int8-static quantizes MatMul inputs per tensor,
# and the fold's extra columns would stretch the attention MatMuls' int8 ranges: it gets the floor. a16w8 (QDQ on
# every op, for NPU execution providers, which run neither ONNX Runtime's CPU Softmax nor SkipLayerNormalization) is
# not rewritten.
REWRITES = {"fp32": "fold", "int8": "fold", "int4": "fold", "int8-static": "floor"}
WHY = {
    "softmax": "the attention mask's -10000 makes ONNX Runtime's Softmax compute in subnormal floats inside its kernel "
               "(12x slower per Softmax) unless the app flushes subnormals: masked scores are put at a per-row floor "
               f"{SOFTMAX_FLOOR:g} below a score of the row (folded into the attention MatMul where it has a per-key "
               "mask, or as Max(x, row max - floor)), which changes no weight an fp32 sum can hold",
    "residual_sums": "ONNX Runtime fuses a residual Add into the LayerNormalization after it (SkipLayerNormFusion, on "
                     "by default), and its SkipLayerNormalization CPU kernel ran 4.9x slower than Add + "
                     "LayerNormalization; Sum computes the same sums and is not fused",
}


def default_session_facts(path: Path, precision: str) -> dict:
    """Rewrite the exported fp32 graph at `path` in place, before any quantizer reads it, as REWRITES says for
    `precision`; returns the export's graph facts to start from ({"default_session": what changed}, or {})."""
    mode = REWRITES.get(precision)
    return {"default_session": fast_under_defaults(path, fold=mode == "fold")} if mode else {}


def fast_under_defaults(path: Path, fold: bool = True) -> dict:
    """Rewrite the ONNX file at `path` in place (see the module's docstring); returns the manifest's record."""
    onnx = require_module("onnx", "onnx")
    model = onnx.load(str(path))
    facts = rewrite(model, fold=fold)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return facts


def rewrite(model, fold: bool = True) -> dict:
    """All rewrites on an in-memory ModelProto: each float Softmax over the last axis is folded (where it has the
    pattern and `fold`) or floored, each residual Add into a LayerNormalization becomes a Sum."""
    graph = Graph(model)
    folds = fold_masked_scores(graph) if fold else 0
    floors = floor_softmaxes(graph)
    sums = residual_adds_to_sum(graph)
    graph.commit()
    return {"softmax_folds": folds, "softmax_floors": floors, "softmax_floor": SOFTMAX_FLOOR, "residual_sums": sums,
            "why": WHY}


class Graph:
    """A ModelProto's graph being rewritten: producers, consumers, known float tensors and ranks, unique names, and new
    nodes to insert; `commit` writes the nodes back in a topological order."""

    def __init__(self, model) -> None:
        onnx = require_module("onnx", "onnx")
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.model, self.graph = model, model.graph
        self.opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
        self.nodes = list(self.graph.node)
        typed = [*self.graph.input, *self.graph.output, *self.graph.value_info]
        self.floats = {v.name for v in typed if v.type.tensor_type.elem_type == FLOAT} | \
            {t.name for t in self.graph.initializer if t.data_type == FLOAT}
        self.shapes = {v.name: v.type.tensor_type.shape for v in typed if v.type.tensor_type.HasField("shape")}
        self.constants = {t.name for t in self.graph.initializer} | \
            {o for n in self.nodes if n.op_type == "Constant" for o in n.output}
        self.outputs = {o.name for o in self.graph.output}
        self.taken = {v for n in self.nodes for v in (*n.input, *n.output, n.name)} | \
            {v.name for v in (*self.graph.input, *self.graph.output, *self.graph.initializer, *self.graph.value_info)}
        self.removed: list = []
        self.cache: dict = {}
        self.folded: set[int] = set()  # id() of the Softmax nodes folded already
        self.anchor = None  # new nodes go just before this node (at the end when None)

    def name(self, base: str) -> str:
        """A value/node name not used in the graph yet, based on `base`."""
        candidate, i = base, 0
        while candidate in self.taken:
            i += 1
            candidate = f"{base}_{i}"
        self.taken.add(candidate)
        return candidate

    def producer(self, value: str):
        return next((n for n in self.nodes if value in n.output), None)

    def consumers(self, value: str) -> list:
        return [n for n in self.nodes if value in n.input]

    def only_feeds(self, value: str, node) -> bool:
        """`value` is read by `node` alone (and is no graph output)."""
        return value not in self.outputs and [id(n) for n in self.consumers(value)] == [id(node)]

    def dims(self, value: str) -> list | None:
        """Static dims of `value` (None for symbolic ones), or None if its shape is unknown."""
        shape = self.shapes.get(value)
        return None if shape is None else [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]

    def constant(self, base: str, value) -> str:
        """An initializer holding `value` (one per distinct base and value)."""
        key = (base, np.asarray(value).dtype.str, np.asarray(value).tobytes())
        if key not in self.cache:
            self.cache[key] = self.name(base)
            self.graph.initializer.append(self.numpy_helper.from_array(np.asarray(value), self.cache[key]))
        return self.cache[key]

    def add(self, op: str, inputs: list[str], base: str, **attributes) -> str:
        """Append a node of `op` with one output named after `base`; returns the output's name."""
        output = self.name(base)
        node = self.helper.make_node(op, inputs, [output], name=output, **attributes)
        at = next((i for i, n in enumerate(self.nodes) if n is self.anchor), len(self.nodes))
        self.nodes.insert(at, node)
        return output

    def remove(self, node) -> None:
        self.nodes = [n for n in self.nodes if n is not node]
        self.removed.extend(node.output)

    def commit(self) -> None:
        """Write the nodes back in a topological order, the current one wherever it is one (each step takes the first
        node whose inputs are all computed); drop the value_info of removed values."""
        available = {v.name for v in (*self.graph.input, *self.graph.initializer)} | {""}
        pending, ordered = list(self.nodes), []
        while pending:
            ready = next((i for i, n in enumerate(pending) if all(x in available for x in n.input)), None)
            if ready is None:
                raise ValueError("the rewritten ONNX graph has a cycle or reads a value nothing produces")
            node = pending.pop(ready)
            available.update(node.output)
            ordered.append(node)
        del self.graph.node[:]
        self.graph.node.extend(ordered)
        stale = [v for v in self.graph.value_info if v.name in set(self.removed)]
        for value in stale:
            self.graph.value_info.remove(value)


def is_last_axis_softmax(graph: Graph, node) -> bool:
    axis = next((graph.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"),
                -1 if graph.opset >= 13 else 1)
    return node.op_type == "Softmax" and node.domain in ("", "ai.onnx") and axis == -1 and node.input[0] in graph.floats


def fold_masked_scores(graph: Graph) -> int:
    """Softmax(MatMul(q, kT) + bias), where the float bias has one value per key (its second-to-last dim is 1), becomes
    Softmax(MatMul(concat(q, 1, floor), concat(kT * kept, bias * kept, masked))); returns how many."""
    count = 0
    for softmax in [n for n in graph.nodes if is_last_axis_softmax(graph, n)]:
        add = graph.producer(softmax.input[0])
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx") \
                or not graph.only_feeds(softmax.input[0], softmax):
            continue
        for side in (0, 1):
            matmul, bias = graph.producer(add.input[side]), add.input[1 - side]
            bias_dims, score_dims = graph.dims(bias), graph.dims(add.input[side])
            if matmul is not None and matmul.op_type == "MatMul" and graph.only_feeds(add.input[side], add) \
                    and bias in graph.floats and all(x in graph.floats for x in matmul.input) \
                    and bias_dims is not None and score_dims is not None and 2 <= len(bias_dims) <= len(score_dims) \
                    and bias_dims[-2] == 1:
                break
        else:
            continue
        q, k_t = matmul.input
        graph.anchor = matmul
        kept, masked_row, bias_row = per_key_terms(graph, bias, k_t)
        # The floor of row i: its score for key 0 (bias included), SOFTMAX_FLOOR lower.
        first = [graph.constant("pocketbert_zero", np.array([0], np.int64)),
                 graph.constant("pocketbert_one_index", np.array([1], np.int64)),
                 graph.constant("pocketbert_last_axis", np.array([-1], np.int64))]
        key0 = graph.add("MatMul", [q, graph.add("Slice", [k_t, *first], k_t + "_key0")], q + "_key0_score")
        score0 = graph.add("Add", [key0, graph.add("Slice", [bias, *first], bias + "_key0")], q + "_key0_biased")
        floor = graph.add("Sub", [score0, graph.constant("pocketbert_softmax_floor", np.array(SOFTMAX_FLOOR, np.float32))],
                          q + "_floor")
        floor = graph.add("Max", [floor, graph.constant("pocketbert_lowest_floor", np.array(LOWEST_FLOOR, np.float32))],
                          q + "_floor_finite")
        ones = graph.add("Expand", [graph.constant("pocketbert_one", np.array(1.0, np.float32)),
                                    shape_with(graph, q, -1, "_column_shape")], q + "_ones")
        q_ext = graph.add("Concat", [q, ones, floor], q + "_extended", axis=-1)
        k_kept = graph.add("Mul", [k_t, kept], k_t + "_kept")
        k_ext = graph.add("Concat", [k_kept, bias_row, masked_row], k_t + "_extended", axis=-2)
        matmul.input[0], matmul.input[1] = q_ext, k_ext
        softmax.input[0] = matmul.output[0]
        graph.remove(add)
        graph.folded.add(id(softmax))
        count += 1
    graph.anchor = None
    return count


def per_key_terms(graph: Graph, bias: str, k_t: str) -> tuple[str, str, str]:
    """For a per-key bias and the transposed keys [..., d, keys]: kept (1.0 where bias > MASKED_BELOW, else 0.0), and
    the rows appended to the keys: masked (1 - kept) and bias * kept (as a Where, so a -inf bias gives 0), expanded to
    k_t's leading dims."""
    key = ("per_key", bias)
    if key not in graph.cache:
        keep = graph.add("Greater", [bias, graph.constant("pocketbert_masked_below", np.array(MASKED_BELOW, np.float32))],
                         bias + "_keep")
        kept = graph.add("Cast", [keep], bias + "_kept", to=FLOAT)
        masked = graph.add("Cast", [graph.add("Not", [keep], bias + "_drop")], bias + "_masked", to=FLOAT)
        kept_bias = graph.add("Where", [keep, bias, graph.constant("pocketbert_zero_float", np.array(0.0, np.float32))],
                              bias + "_kept_bias")
        graph.cache[key] = (kept, masked, kept_bias)
    kept, masked, kept_bias = graph.cache[key]
    row_shape = shape_with(graph, k_t, -2, "_row_shape")
    return (kept, graph.add("Expand", [masked, row_shape], k_t + "_masked_row"),
            graph.add("Expand", [kept_bias, row_shape], k_t + "_bias_row"))


def shape_with(graph: Graph, value: str, axis: int, suffix: str) -> str:
    """The run-time shape of `value` with dim `axis` (-1 or -2) set to 1."""
    shape = graph.add("Shape", [value], value + "_shape")
    index = lambda i: graph.constant("pocketbert_index", np.array([i], np.int64))  # noqa: E731
    one = graph.constant("pocketbert_one_index", np.array([1], np.int64))
    end = graph.constant("pocketbert_end", np.array([np.iinfo(np.int64).max], np.int64))
    parts = [graph.add("Slice", [shape, index(0), index(axis)], value + "_lead"), one]
    if axis == -2:
        parts.append(graph.add("Slice", [shape, index(-1), end], value + "_last"))
    return graph.add("Concat", parts, value + suffix, axis=0)


def floor_softmaxes(graph: Graph) -> int:
    """x -> Max(x, ReduceMax(x, last axis) - SOFTMAX_FLOOR) before every float Softmax over the last axis not folded
    already; returns how many. A Softmax whose input type or axis is not known to qualify is left as it is."""
    count = 0
    for softmax in [n for n in graph.nodes if is_last_axis_softmax(graph, n) and id(n) not in graph.folded]:
        x, graph.anchor = softmax.input[0], softmax
        floor = graph.constant("pocketbert_softmax_floor", np.array(SOFTMAX_FLOOR, np.float32))
        if graph.opset >= 18:  # ReduceMax takes its axes as an input from opset 18 on
            axes = graph.constant("pocketbert_last_axis", np.array([-1], np.int64))
            row_max = graph.add("ReduceMax", [x, axes], x + "_row_max", keepdims=1)
        else:
            row_max = graph.add("ReduceMax", [x], x + "_row_max", axes=[-1], keepdims=1)
        softmax.input[0] = graph.add("Max", [x, graph.add("Sub", [row_max, floor], x + "_floor")], x + "_floored")
        count += 1
    graph.anchor = None
    return count


def residual_adds_to_sum(graph: Graph) -> int:
    """Every Add of two computed tensors (no constant: a residual or the embeddings' sum, not a bias) that feeds a
    LayerNormalization's input becomes a Sum of the same two inputs; returns how many."""
    normalized = {n.input[0] for n in graph.nodes if n.op_type == "LayerNormalization"}
    count = 0
    for node in graph.nodes:
        if node.op_type == "Add" and node.domain in ("", "ai.onnx") and node.output[0] in normalized \
                and not graph.constants & set(node.input):
            node.op_type = "Sum"  # same inputs, outputs and (multidirectional) broadcasting; Add has no attributes
            count += 1
    return count
