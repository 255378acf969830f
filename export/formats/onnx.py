"""ONNX: fp32 with dynamic batch and sequence (torch.onnx dynamo exporter), int8 by ORT dynamic quantization,
int8-static by ORT static quantization (QDQ: int8 weights and activations, calibrated on real QA windows), a16w8 by
ORT's static quantization for Qualcomm's QNN (QDQ on every op: 8-bit weights, 16-bit activations), int4 by ORT's
blockwise 4-bit weights (MatMulNBits for linear layers, GatherBlockQuantized for embeddings)."""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from pocketbert.errors import require_module
from pocketbert.export.base import Exporter, ExportOptions, Runner
from pocketbert.export.calibration import calibration_windows
from pocketbert.export.formats.onnx_graph import default_session_facts
from pocketbert.export.registry import register_format
from pocketbert.export.task import TaskModule
from pocketbert.manifest import output_names
from pocketbert.modeling import load_tokenizer, max_sequence_length
from pocketbert.sessions import applied, onnx_session, settings_of

OPSET = 20
MIN_LENGTH = 2  # torch.export's smallest symbolic size
# The folder layout of a Hugging Face ONNX model: transformers.js reads onnx/model.onnx (fp32) and
# onnx/model_quantized.onnx ("q8"), onnx/model_int8.onnx ("int8") and onnx/model_q4.onnx ("q4"); optimum's
# from_pretrained(folder) finds any of them by its glob of **/*.onnx.
ARTIFACT_NAMES = {"fp32": "onnx/model.onnx", "int8": "onnx/model_quantized.onnx", "int8-static": "onnx/model_int8.onnx",
                  "a16w8": "onnx/model_a16w8.onnx", "int4": "onnx/model_q4.onnx"}
# a16w8 has no transformers.js dtype (its 16-bit QDQ is for NPU execution providers): the folder names no file for it.
TRANSFORMERS_JS_DTYPES = {"fp32": "fp32", "int8": "q8", "int8-static": "int8", "int4": "q4"}
# int4: symmetric blocks (no zero points to store or subtract) of 32 weights along each input dimension;
# accuracy_level 4 lets ORT's CPU kernel quantize the activations to int8 and use its integer dot-product path,
# its fastest (the weights stay 4-bit either way).
INT4_BLOCK_SIZE = 32
INT4_ACCURACY_LEVEL = 4
CALIBRATION_STRIDE = 8  # int8-static, a16w8: at most this many calibration windows run before their ranges are folded in
# How pocketbert runs ONNX files, recorded in each manifest's "runtime_settings" for apps to copy and applied by every
# runner through pocketbert/sessions.py. Only what the graph cannot fix itself: optimum's pipeline, transformers.js and
# onnxruntime-web open a folder with ONNX Runtime's default session options and never read this. The graph is made
# fast under those defaults by onnx_graph.py (no subnormal floats in Softmax, no SkipLayerNormalization fusion), which
# made `session.set_denormal_as_zero` and disabling SkipLayerNormFusion unnecessary for fp32 and int8 (same speed with
# and without them, DistilBERT and a trained MiniLM at seq 384, a 2-core AVX-512 Xeon, 2026-12-07). a16w8's QDQ graph,
# left as it is for NPUs, still meets the -10000 mask in its Softmax on the CPU provider, now unflushed (not measured).
# Measured reason:
# - Idle worker threads otherwise spin after each call and steal the cores from whatever runs next (benchmarks
#   interleave models on the same cores; on a phone, spinning burns battery).
RUNTIME_SETTINGS = {
    "runtime": "onnxruntime",
    "config_entries": {"session.intra_op.allow_spinning": "0"},
    "disabled_optimizers": [],
    "why": {"session.intra_op.allow_spinning": "idle threads spinning between calls slow whatever runs next"},
    "how": "pass disabled_optimizers to onnxruntime.InferenceSession and each config entry to "
           "SessionOptions.add_session_config_entry",
}


@register_format
class OnnxExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"
    runtime, runtime_module, runtime_package = "onnxruntime", "onnxruntime", "onnxruntime"
    precisions = ("fp32", "int8", "int8-static", "a16w8", "int4")
    calibrated_precisions = ("int8-static", "a16w8")
    batch_dynamic = True
    runtime_settings = RUNTIME_SETTINGS

    def artifact_name(self, options: ExportOptions) -> str:
        return ARTIFACT_NAMES[options.precision]

    def loader_config(self, options: ExportOptions) -> dict:
        # transformers.js picks the file by dtype; without this it would look for the fp32 file in an int8 folder.
        dtype = TRANSFORMERS_JS_DTYPES.get(options.precision)
        return {"transformers.js_config": {"dtype": dtype}} if dtype else {}

    def io_spec(self, module, options):
        # ONNX always keeps batch and sequence symbolic, whatever lengths were asked for.
        return super().io_spec(module, ExportOptions(**{**options.to_dict(), "dynamic": True}))

    def accepted_lengths(self, module, options):
        # The graph's sequence axis is symbolic whatever lengths were asked for: any length up to what the
        # position embeddings hold runs.
        return {**super().accepted_lengths(module, options),
                "sequence": {"kind": "range", "min": MIN_LENGTH, "max": max_sequence_length(module.model.config)}}

    def export(self, module: TaskModule, options: ExportOptions, path: Path) -> dict:
        require_module("onnxscript", "onnxscript")
        length = max(options.seq_lens)
        sample = tuple(torch.ones(2, length, dtype=torch.long) for _ in module.input_names)
        batch = torch.export.Dim("batch", min=1, max=64)
        seq = torch.export.Dim("seq", min=MIN_LENGTH, max=max_sequence_length(module.model.config))
        fp32_path = path if options.precision == "fp32" else path.with_name("fp32" + path.suffix)
        program = torch.onnx.export(
            module, sample, dynamo=True, opset_version=OPSET, input_names=list(module.input_names),
            output_names=list(module.output_names), dynamic_shapes={n: {0: batch, 1: seq} for n in module.input_names},
            external_data=False, verbose=False,
        )
        assert program is not None  # dynamo=True always returns the ONNXProgram (None is the legacy exporter's)
        program.save(str(fp32_path))
        facts = default_session_facts(fp32_path, options.precision)  # fast under ONNX Runtime's default options
        if options.precision == "int8":
            quantize_dynamic_int8(fp32_path, path)
        elif options.precision == "int4":
            facts["quantization"] = quantize_4bit(fp32_path, path)
        elif options.precision in self.calibrated_precisions:
            # The export writes the tokenizer into the folder (two levels above onnx/model_int8.onnx) first.
            tokenizer = load_tokenizer(path.parents[1])
            calibration = calibration_windows(tokenizer, module.input_names, length, options.calibration,
                                              task=module.task)
            quantize = quantize_static_int8 if options.precision == "int8-static" else quantize_static_a16w8
            facts["quantization"] = quantize(fp32_path, path, calibration)
        if fp32_path != path:  # the fp32 graph was only the quantizer's input
            fp32_path.unlink()
        onnx = require_module("onnx", "onnx")
        saved = onnx.load(str(path), load_external_data=False)
        graph = saved.graph
        ops = sorted({node.op_type for node in graph.node})
        # Static quantization may raise the exported opset (a16w8: 21).
        opset = next(entry.version for entry in saved.opset_import if entry.domain in ("", "ai.onnx"))
        return {"opset": opset, "nodes": len(graph.node), "op_types": ops, **facts}

    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        settings = settings_of(manifest)
        session = cpu_session(path, threads, settings=settings)
        names = tuple(i["name"] for i in manifest["inputs"])
        outputs = output_names(manifest)

        def predict(feed: dict[str, np.ndarray]):
            return tuple(session.run(outputs, feed))

        return Runner(predict, names, batch_one=False,
                      info={"providers": session.get_providers(), **applied(settings, threads)})

    def profile_ops(self, path: Path, manifest: dict, feed: dict[str, np.ndarray], warmup: int, runs: int,
                    threads: int | None = None) -> dict:
        with tempfile.TemporaryDirectory() as trace_dir:
            session = cpu_session(path, threads, profile_prefix=str(Path(trace_dir) / "ort"),
                                  settings=settings_of(manifest))
            for _ in range(warmup + runs):
                session.run(output_names(manifest), feed)
            events = json.loads(Path(session.end_profiling()).read_text())
        # Each session.run is one "model_run" event; the node events inside the timed ones are kept.
        calls = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[warmup:]
        ops: Counter[str] = Counter()
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                if any(start <= event["ts"] <= end for start, end in calls):
                    ops[event["args"]["op_name"]] += event["dur"] / 1000 / runs
        return {"ops": dict(ops), "wall_ms": sum(end - start for start, end in calls) / 1000 / runs,
                "profiler": "onnxruntime SessionOptions.enable_profiling (kernel time per node)"}


def cpu_session(path: Path, threads: int | None = None, profile_prefix: str | None = None,
                settings: dict | None = None):
    """An ONNX Runtime CPU session as pocketbert runs it: `settings` (a manifest's runtime settings; default this
    format's own) applied by pocketbert/sessions.py, the one place every runner opens ONNX files."""
    require_module("onnxruntime", "onnxruntime")
    return onnx_session(path, RUNTIME_SETTINGS if settings is None else settings, threads, profile_prefix)


def quantize_dynamic_int8(fp32_path: Path, path: Path) -> None:
    """`--precision int8`: ORT dynamic quantization, s8 weights per output channel (the fastest setting on AVX2 and
    AVX-512 VNNI, `pocketbert bench onnx-int8-settings`), activations quantized to u8 at run time."""
    quantization = require_module("onnxruntime.quantization", "onnxruntime")
    without_initializer_shapes(fp32_path)
    quantization.quantize_dynamic(str(fp32_path), str(path), weight_type=quantization.QuantType.QInt8, per_channel=True)


def without_initializer_shapes(fp32_path: Path) -> None:
    """Drop the value_info entries of initializers from the quantizer's input graph. The dynamo exporter records every
    weight's shape there; ORT's dynamic quantizer turns a Gemm with transB (a classifier head on the [CLS] vector)
    into a MatMul by transposing its weight in place, and its shape inference then fails on the stale entry."""
    onnx = require_module("onnx", "onnx")
    model = onnx.load(str(fp32_path))
    weights = {initializer.name for initializer in model.graph.initializer}
    kept = [info for info in model.graph.value_info if info.name not in weights]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(fp32_path))


# int8-static quantizes only these ops' inputs and outputs. Measured on the demo's student (96 real dev windows,
# argmax agreement with fp32): quantizing every op gives 0%, because the Softmax input and the Adds carry the
# -10000 attention mask, whose range leaves a per-tensor int8 scale no resolution for the scores; LayerNormalization
# in int8 costs 15 points. MatMul and Mul in int8 keep 97%; Gather stores the embedding tables in int8 (a
# DequantizeLinear before each lookup), so every weight the file holds is int8 but the feed-forward down projections'.
STATIC_INT8_OPS = ("MatMul", "Mul", "Gather")


def calibration_reader(calibration):
    """ORT's reader of the calibration windows, one window a call, and the stride of its strided MinMax."""
    quantization = require_module("onnxruntime.quantization", "onnxruntime")
    rows = [{name: values[i:i + 1] for name, values in calibration.windows.items()}
            for i in range(len(calibration.windows["input_ids"]))]
    # ORT keeps every activation of every layer for each window it runs until it folds them into ranges, so it runs
    # the windows a few at a time (its "strided" MinMax) to bound the memory of real-size models.
    stride = max(d for d in range(1, CALIBRATION_STRIDE + 1) if len(rows) % d == 0)

    class Windows(quantization.CalibrationDataReader):
        def __init__(self):
            self.pending = iter(rows)

        def __len__(self):
            return len(rows)

        def set_range(self, start_index: int, end_index: int):
            self.pending = iter(rows[start_index:end_index])

        def get_next(self):
            return next(self.pending, None)

    return Windows(), stride


def preprocessed(fp32_path: Path, path: Path) -> Path:
    """The fp32 graph prepared for static quantization, beside `path` (the caller removes it)."""
    quantization = require_module("onnxruntime.quantization", "onnxruntime")
    prepared = path.with_name("prepared" + path.suffix)
    # ORT's symbolic shape inference cannot finish on the dynamo graph; ONNX's own shape inference and graph
    # optimisation still run.
    quantization.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    return prepared


PRE_PROCESSING = ("onnxruntime quant_pre_process (ONNX shape inference + graph optimisation; symbolic shape inference "
                  "skipped)")


def quantize_static_int8(fp32_path: Path, path: Path, calibration) -> dict:
    """Weights and activations to int8 as QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized op),
    activation ranges from the calibration windows by MinMax; returns the manifest's record, with which ops take
    int8 inputs and which do not."""
    quantization = require_module("onnxruntime.quantization", "onnxruntime")
    onnx = require_module("onnx", "onnx")
    windows, stride = calibration_reader(calibration)
    with _root_logger_at(logging.ERROR):  # a line per 1-D weight that cannot be per-channel, and a pre-process hint
        prepared = preprocessed(fp32_path, path)
        kept_float = feed_forward_down_projections(onnx.load(str(prepared), load_external_data=False).graph)
        quantization.quantize_static(
            str(prepared), str(path), windows, quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax, op_types_to_quantize=list(STATIC_INT8_OPS),
            nodes_to_exclude=kept_float, extra_options={"CalibStridedMinMax": stride},
        )
    prepared.unlink()
    integer_ops, other_ops = qdq_op_types(onnx.load(str(path), load_external_data=False).graph)
    return {
        "format": "QDQ (onnxruntime quantize_static); ONNX Runtime fuses DequantizeLinear -> op -> QuantizeLinear "
                  "into int8 kernels where it has them",
        "weights": "int8 symmetric, per output channel", "activations": "int8 (QInt8), per tensor, asymmetric",
        "calibration_method": "MinMax", "calibration": calibration.facts, "pre_processing": PRE_PROCESSING,
        "quantized_op_types": list(STATIC_INT8_OPS),
        "kept_float": {"feed_forward_down_projections": len(kept_float),
                       "why": "their input (the activation function's output) has outliers a per-tensor int8 scale "
                              "cannot hold; Add, Softmax and LayerNormalization carry the attention mask or lose "
                              "accuracy in int8 (measured on the demo's student)"},
        "integer_ops": integer_ops,
        "integer_ops_means": "every input from a DequantizeLinear (QDQ marks where int8 tensors flow)",
        "other_ops": other_ops,
    }


def quantize_static_a16w8(fp32_path: Path, path: Path, calibration) -> dict:
    """Every op's inputs and outputs as QDQ, 8-bit weights and 16-bit activations, by ORT's configuration for
    Qualcomm's QNN execution provider (get_qnn_qdq_config: its mixed precision, with the tensor overrides QNN's kernels
    need), activation ranges from the calibration windows by MinMax. 16 bits give the attention mask, LayerNorm and
    the feed-forward's outliers the range int8-static keeps in float."""
    quantization = require_module("onnxruntime.quantization", "onnxruntime")
    qnn = require_module("onnxruntime.quantization.execution_providers.qnn", "onnxruntime")
    onnx = require_module("onnx", "onnx")
    windows, stride = calibration_reader(calibration)
    with _root_logger_at(logging.ERROR):
        prepared = preprocessed(fp32_path, path)
        # A Gather's table counts as an activation (16-bit); weights are 8-bit, tables too (half the file, F1 kept).
        tables = embedding_tables(onnx.load(str(prepared), load_external_data=False).graph)
        config = qnn.get_qnn_qdq_config(str(prepared), windows, activation_type=quantization.QuantType.QUInt16,
                                        weight_type=quantization.QuantType.QUInt8, stride=stride,
                                        init_overrides={name: [{"quant_type": quantization.QuantType.QUInt8}]
                                                        for name in tables})
        quantization.quantize(str(prepared), str(path), config)
    prepared.unlink()
    integer_ops, other_ops = qdq_op_types(onnx.load(str(path), load_external_data=False).graph)
    return {
        "format": "QDQ (onnxruntime get_qnn_qdq_config + quantize), QuantizeLinear/DequantizeLinear of the "
                  "com.microsoft domain, for NPU execution providers (QNN); ONNX Runtime's CPU provider runs the ops "
                  "between the QDQ pairs in float",
        "weights": "uint8 asymmetric, per tensor (QNN's default); embedding tables too",
        "embedding_tables": len(tables),
        "activations": "uint16 (QUInt16), per tensor, asymmetric",
        "calibration_method": "MinMax", "calibration": calibration.facts, "pre_processing": PRE_PROCESSING,
        "quantized_op_types": "all",
        "integer_ops": integer_ops,
        "integer_ops_means": "every input from a DequantizeLinear (QDQ marks where 16-bit tensors flow)",
        "other_ops": other_ops,
        "other_ops_means": "shape arithmetic, reshapes and slices (they move values, no arithmetic), and lookups",
    }


def feed_forward_down_projections(graph) -> list[str]:
    """Names of the MatMuls that contract the feed-forward's wide activation back to the hidden size: those whose
    constant weight has the widest input dimension of all, wider than their output."""
    weights = {t.name: tuple(t.dims) for t in graph.initializer if len(t.dims) == 2}
    linear = [(node.name, weights[node.input[1]]) for node in graph.node
              if node.op_type == "MatMul" and node.input[1] in weights]
    widest = max((k for _, (k, _n) in linear), default=0)
    return [name for name, (k, n) in linear if k == widest and k > n]


def embedding_tables(graph) -> list[str]:
    """Names of the constant tables Gather nodes look rows up in."""
    constants = {t.name for t in graph.initializer}
    return [node.input[0] for node in graph.node if node.op_type == "Gather" and node.input[0] in constants]


def qdq_op_types(graph) -> tuple[dict, dict]:
    """Op type counts: ops whose every input comes from a DequantizeLinear (integer in: ORT fuses int8 ones into
    int8 kernels, whose output may be float), and all other ops (float, or shape arithmetic on integers)."""
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    integer_ops: Counter[str] = Counter()
    other_ops: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        integer = all(name in dequantized for name in node.input if name)
        (integer_ops if integer else other_ops)[node.op_type] += 1
    return dict(integer_ops.most_common()), dict(other_ops.most_common())


@contextlib.contextmanager
def _root_logger_at(level: int):
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)


def quantize_4bit(fp32_path: Path, path: Path) -> dict:
    """Every linear layer's weight to 4-bit blocks (MatMulNBits) and every embedding table too (GatherBlockQuantized,
    which ONNX Runtime's CPU provider runs); activations stay fp32 between ops. Returns the manifest's record."""
    onnx = require_module("onnx", "onnx")
    nbits = _import_nbits_quantizer()
    model = onnx.load(str(fp32_path))
    tables = {t.name for t in model.graph.initializer if len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT}
    # Only lookups into a constant 2-D float table are embeddings; other Gathers index shapes.
    embeddings = [node.name for node in model.graph.node if node.op_type == "Gather" and node.input[0] in tables]
    quantizer = nbits.MatMulNBitsQuantizer(
        model, bits=4, block_size=INT4_BLOCK_SIZE, is_symmetric=True, accuracy_level=INT4_ACCURACY_LEVEL,
        op_types_to_quantize=("MatMul",), nodes_to_include=embeddings,
        quant_axes=(("MatMul", 0), ("Gather", 1)),  # blocks run along the input (K) and the hidden axis
    )
    # An all-zero block (a padding token's embedding row) divides 0 by a 0 scale before np.where picks 0 for it.
    with np.errstate(divide="ignore", invalid="ignore"):
        quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
    quantized = [node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node]
    return {
        "weights": "int4 symmetric, blockwise along the input axis (onnxruntime MatMulNBitsQuantizer)",
        "block_size": INT4_BLOCK_SIZE, "accuracy_level": INT4_ACCURACY_LEVEL,
        "linear_layers": f"{quantized.count('MatMulNBits')} MatMul with constant weights -> MatMulNBits",
        "embeddings": f"int4, {quantized.count('GatherBlockQuantized')} tables -> GatherBlockQuantized",
        "activations": "fp32 between ops; int8 inside MatMulNBits (accuracy_level 4)",
    }


def _import_nbits_quantizer():
    # Importing it calls logging.basicConfig(level=INFO): every library's INFO lines (one per quantized node) would
    # print for the rest of the process. A handler already on the root logger makes that call a no-op.
    root, guard = logging.getLogger(), logging.NullHandler()
    root.addHandler(guard)
    try:
        return require_module("onnxruntime.quantization.matmul_nbits_quantizer", "onnxruntime")
    finally:
        root.removeHandler(guard)
