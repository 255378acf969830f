"""ExecuTorch .pte: XNNPACK (fp32, int8, int4) for every phone CPU, or the Core ML delegate (fp32, fp16) for Apple.

Sequence lengths: `--dynamic` exports the range [min_seq_len, max_seq_len]; otherwise one --seq-len
gives a static shape and several give the range [min, max] of them (one program serves every length
in it). The manifest's "graph" entry records which ("sequence") and how well XNNPACK took the graph.

XNNPACK delegation. The stock lowering of a transformers BERT leaves layer norm, the SDPA mask
handling (where/any/logical_not/full_like), identity expands and every symbolic-size reshape on the
portable CPU kernels, which splits DistilBERT into 27 delegate segments (57 with a dynamic length)
and makes the .pte slower than eager PyTorch at length 384. Before export we therefore
- run attention as batch-1 3-D bmm/softmax (registered with transformers' AttentionInterface),
- write layer norm with delegable ops (mean as a GEMM with a 1/H vector, rsqrt, mul, add),
and during lowering give reshapes one inferred (-1) dimension and drop identity expands, which
XNNPACK's static reshape accepts. What stays outside: the embedding gathers, the int64 mask cast and
the final logits split — XNNPACK does not implement them, and they are cheap.
"""
from __future__ import annotations

import copy
import re
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.fx.passes.infra.pass_base import PassResult
from torch.nn import functional as F

from pocketbert.errors import NotRunnableHere, PocketbertError, require_module
from pocketbert.export.base import Exporter, ExportOptions, Runner
from pocketbert.export.coreml_mil.executorch_payload import delegate_predictor
from pocketbert.export.formats.executorch_quant import quantize_weights
from pocketbert.export.registry import register_format
from pocketbert.export.task import TaskModule

BATCH_ONE_ATTENTION = "pocketbert_batch1_bmm"
COREML_PRECISIONS = {"fp32": "FLOAT32", "fp16": "FLOAT16"}
XNNPACK_PRECISIONS = ("fp32", "int8", "int4")
DEFAULT_DEPLOYMENT_TARGET = "iOS17"
BOOKKEEPING_OPS = {"getitem", "sym_size.int"}  # graph plumbing, not computation


@register_format
class ExecuTorchExporter(Exporter):
    name = "executorch"
    suffix = ".pte"
    runtime, runtime_module, runtime_package = "executorch", "executorch.runtime", "executorch"
    precisions = ("fp32", "fp16", "int8", "int4")  # fp16: Core ML backend only; int8, int4: XNNPACK only
    backends = ("xnnpack", "coreml")

    @classmethod
    def why_not_runnable_here(cls, backend: str | None = None) -> str | None:
        if backend == "coreml" and sys.platform != "darwin":
            return f"the Core ML delegate runs only in ExecuTorch builds for iOS/macOS (this is {sys.platform})"
        return super().why_not_runnable_here(backend)

    def check_precision(self, precision: str, backend: str | None) -> None:
        allowed = XNNPACK_PRECISIONS if backend == "xnnpack" else tuple(COREML_PRECISIONS)
        if precision not in allowed:
            other = "coreml" if backend == "xnnpack" else "xnnpack"
            raise PocketbertError(f"the executorch {backend} backend has no precision '{precision}'; "
                                  f"choose {' or '.join(allowed)}, or --backend {other}")

    def export(self, module: TaskModule, options: ExportOptions, path: Path) -> dict:
        executorch_exir = require_module("executorch.exir", "executorch")
        backend = options.backend or self.backends[0]
        low, high = sequence_range(options)
        facts = {"backend": backend, "sequence": {"static": low} if low == high else {"range": [low, high]}}

        if backend == "xnnpack":
            program_module, facts["rewrites"] = xnnpack_friendly_copy(module)
            if options.precision in ("int8", "int4"):
                facts["quantization"] = quantize_weights(program_module, options.precision)
            partitioners, passes = [xnnpack_partitioner()], [delegable_reshapes]
        else:
            program_module = module  # Core ML takes the whole stock graph in one segment
            facts["deployment_target"] = options.deployment_target or DEFAULT_DEPLOYMENT_TARGET
            partitioners, passes = [coreml_partitioner(options)], None

        sample = tuple(torch.ones(1, high, dtype=torch.long) for _ in module.input_names)
        dynamic_shapes = None
        if low != high:
            seq = torch.export.Dim("seq", min=low, max=high)
            dynamic_shapes = {name: {1: seq} for name in module.input_names}
        with torch.no_grad():
            exported = torch.export.export(program_module, sample, dynamic_shapes=dynamic_shapes)
        lowered = executorch_exir.to_edge_transform_and_lower(exported, transform_passes=passes,
                                                              partitioner=partitioners)
        facts.update(graph_facts(lowered.exported_program().graph_module))
        program = lowered.to_executorch()
        with open(path, "wb") as handle:
            program.write_to_file(handle)
        return facts

    def accepted_lengths(self, module: TaskModule, options: ExportOptions) -> dict:
        # Several --seq-len values export one program over the range between them.
        facts = super().accepted_lengths(module, options)
        low, high = sequence_range(options)
        facts["sequence"] = {"kind": "static", "length": low} if low == high else {"kind": "range", "min": low,
                                                                                    "max": high}
        return facts

    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        runtime_module = require_module("executorch.runtime", "executorch")
        runtime = runtime_module.Runtime.get()
        names = tuple(i["name"] for i in manifest["inputs"])
        sequence = manifest.get("graph", {}).get("sequence", {})
        lengths = (sequence["static"],) if "static" in sequence else None
        if manifest.get("backend") == "coreml" and not runtime.backend_registry.is_available("CoreMLBackend"):
            # The Core ML delegate runs only in ExecuTorch builds for iOS/macOS; its payload is an ML Program,
            # which the Core ML reference evaluator runs instead (NotRunnableHere where it cannot).
            delegate, info = delegate_predictor(Path(path), manifest)
            return Runner(delegate, names, batch_one=True, lengths=lengths, info=info)
        set_threads(threads)
        method = runtime.load_program(Path(path)).load_method("forward")

        def predict(feed: dict[str, np.ndarray]):
            return tuple(output.numpy() for output in method.execute([torch.from_numpy(feed[name]) for name in names]))

        return Runner(predict, names, batch_one=True, lengths=lengths,
                      info={"runtime": "executorch.runtime", "threads": threads or "runtime default",
                            "backends": runtime.backend_registry.registered_backend_names})


    def profile_ops(self, path: Path, manifest: dict, feed: dict[str, np.ndarray], warmup: int, runs: int,
                    threads: int | None = None) -> dict:
        if manifest.get("backend") == "coreml":
            raise NotRunnableHere("the Core ML delegate's ops run inside Core ML, which ExecuTorch's profiler does not "
                                  "see; profile on a Mac with Instruments")
        runtime = require_module("executorch.runtime", "executorch").Runtime.get()
        inspector_module = require_module("executorch.devtools", "executorch")
        set_threads(threads)
        program = runtime.load_program(Path(path), enable_etdump=True)
        method = program.load_method("forward")
        inputs = [torch.from_numpy(feed[i["name"]]) for i in manifest["inputs"]]
        for _ in range(warmup + runs):
            method.execute(inputs)
        with tempfile.TemporaryDirectory() as trace_dir:
            trace = Path(trace_dir) / "trace.etdp"
            program.write_etdump_result_to_file(str(trace), str(Path(trace_dir) / "debug.bin"))
            with warnings.catch_warnings():  # no debug buffer was asked for: no tensor values, only times
                warnings.simplefilter("ignore")
                inspector = inspector_module.Inspector(etdump_path=str(trace))
        ops: Counter[str] = Counter()
        wall = 0.0
        for block in inspector.event_blocks:
            for event in block.events:
                if block.name != "Execute" or event.perf_data is None:
                    continue
                timed = sum(event.perf_data.raw[warmup:]) / runs  # one raw entry per execution, in ms
                if event.name == "Method::execute":
                    wall = timed
                elif event.name not in ETDUMP_WRAPPERS:
                    ops[etdump_op_type(event.name)] += timed
        return {"ops": dict(ops), "wall_ms": wall,
                "profiler": "ExecuTorch ETDump (Runtime.load_program(enable_etdump=True)), XNNPACK's per-operator "
                            "times inside the delegate"}


# ETDump events that enclose others (the whole call, a delegate call, a portable-kernel call): counting them as well
# would count their contents twice.
ETDUMP_WRAPPERS = {"DELEGATE_CALL", "OPERATOR_CALL"}


def etdump_op_type(name: str) -> str:
    """'Fully Connected (NC, QDU8, F32, QC8W) GEMM #11' -> 'Fully Connected (NC, QDU8, F32, QC8W) GEMM';
    'native_call_embedding.out' -> 'embedding (portable kernel)'."""
    if name.startswith("native_call_"):
        return name.removeprefix("native_call_").rsplit(".", 1)[0] + " (portable kernel)"
    return re.sub(r" #\d+$", "", name)


def set_threads(threads: int | None) -> None:
    if threads:
        # The XNNPACK threadpool is process-wide in the pybindings; there is no per-program setting.
        from executorch.extension.pybindings import portable_lib  # lazy: optional runtime; importing it loads the native library

        portable_lib._unsafe_reset_threadpool(threads)


def sequence_range(options: ExportOptions) -> tuple[int, int]:
    """(low, high) lengths the program accepts; equal ends mean a static shape."""
    if options.dynamic:
        return options.min_seq_len, options.max_seq_len
    return min(options.seq_lens), max(options.seq_lens)


def xnnpack_friendly_copy(module: TaskModule):
    """A copy of `module` whose attention and layer norms lower entirely to XNNPACK (same outputs)."""
    program_module = copy.deepcopy(module)
    # Models with their own attention code (DeBERTa-v2) do not go through transformers' AttentionInterface.
    pluggable = program_module.model._can_set_attn_implementation()
    if pluggable:
        register_batch_one_attention()
        program_module.model.set_attn_implementation(BATCH_ONE_ATTENTION)
    layer_norms = 0
    for parent in list(program_module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.LayerNorm) and not normalizes_a_constant(parent, name):
                setattr(parent, name, DelegableLayerNorm(child))
                layer_norms += 1
    attention = "batch-1 3-D bmm + softmax" if pluggable else "the model's own (no attention interface)"
    return program_module, {"attention": attention, "layer_norms_decomposed": layer_norms}


def normalizes_a_constant(parent: nn.Module, name: str) -> bool:
    """DeBERTa-v2's encoder LayerNorm normalizes the relative-position table, which depends on no input: decomposed,
    it becomes a delegate partition that returns a constant, which XNNPACK rejects as a pass-through argument."""
    return name == "LayerNorm" and hasattr(parent, "rel_embeddings")


def register_batch_one_attention() -> None:
    from transformers import AttentionInterface  # lazy: transformers adds ~1 s and `pocketbert --help` imports this module

    AttentionInterface.register(BATCH_ONE_ATTENTION, batch_one_attention)


def batch_one_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention for one sequence as [heads, seq, head_dim] bmm's.

    transformers' 4-D matmul becomes expand + reshape-to-3-D with two symbolic dims, which XNNPACK
    rejects; with batch 1 every reshape here has a single unknown dimension. Other batch sizes use
    the eager implementation.
    """
    from transformers.models.bert.modeling_bert import eager_attention_forward  # lazy: transformers, as above

    batch, heads, _, head_dim = query.shape
    if batch != 1 or module.training:
        return eager_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout)
    scaling = head_dim ** -0.5 if scaling is None else scaling
    q, k, v = (t.reshape(heads, -1, head_dim) for t in (query, key, value))
    scores = torch.bmm(q, k.transpose(1, 2)) * scaling
    if attention_mask is not None:  # TaskModule's [1, 1, 1, seq] additive mask
        scores = scores + attention_mask.reshape(1, -1, attention_mask.shape[-1])
    out = torch.bmm(torch.softmax(scores, dim=-1), v)
    return out.reshape(1, heads, -1, head_dim).transpose(1, 2), None


class DelegableLayerNorm(nn.Module):
    """LayerNorm over the last axis from GEMM/sub/mul/rsqrt/add, all of which XNNPACK runs.

    The mean is a matmul with a constant 1/H row: XNNPACK's own mean only takes 4-D inputs.
    """

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        width = norm.normalized_shape[-1]
        # Either may be None: ModernBERT's norms have no bias, and elementwise_affine=False has neither.
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.register_buffer("averager", torch.full((1, width), 1.0 / width), persistent=False)

    def forward(self, x):
        centered = x - F.linear(x, self.averager)
        variance = F.linear(centered * centered, self.averager)
        normalized = centered * torch.rsqrt(variance + self.eps)
        if self.weight is not None:
            normalized = normalized * self.weight
        return normalized if self.bias is None else normalized + self.bias


def delegable_reshapes(graph_module):
    """Edge pass: one inferred (-1) dim per symbolic reshape, identity expands removed (XNNPACK takes both)."""
    changed = False
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function":
            continue
        name = str(node.target)
        if "expand_copy" in name and node.meta["val"].shape == node.args[0].meta["val"].shape:
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)
            changed = True
        elif "view_copy" in name:
            shape = [d if isinstance(d, int) else -1 for d in node.meta["val"].shape]
            if shape.count(-1) == 1 and shape != list(node.args[1]):
                node.args = (node.args[0], shape)
                changed = True
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return PassResult(graph_module, changed)


def graph_facts(graph_module) -> dict:
    """Delegate segments, the ops left on the portable CPU kernels (by name), and the total op count."""
    outside = Counter(op_name(n) for n in graph_module.graph.nodes
                      if n.op == "call_function" and op_name(n) not in BOOKKEEPING_OPS)
    segments = outside.pop("executorch_call_delegate", 0)
    delegated = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.target.startswith("lowered_module"):
            inner = getattr(graph_module, node.target).original_module.graph_module.graph
            delegated += sum(1 for n in inner.nodes if n.op == "call_function" and op_name(n) not in BOOKKEEPING_OPS)
    return {"delegate_segments": segments, "delegated_ops": delegated,
            "non_delegated_ops": sum(outside.values()), "non_delegated_op_counts": dict(outside.most_common()),
            "total_ops": delegated + sum(outside.values())}


def op_name(node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    return name.removeprefix("aten.")


def xnnpack_partitioner():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # lazy: optional converter, only ExecuTorch exports

    return XnnpackPartitioner()


def coreml_partitioner(options: ExportOptions):
    coremltools = require_module("coremltools", "coremltools")
    from executorch.backends.apple.coreml.compiler import CoreMLBackend  # lazy: optional converter (with coremltools)
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner  # lazy: as above

    target_name = options.deployment_target or DEFAULT_DEPLOYMENT_TARGET
    target = getattr(coremltools.target, target_name, None)
    if target is None:
        raise PocketbertError(f"unknown Core ML deployment target '{target_name}'; use e.g. iOS17, iOS18 or macOS14")
    specs = CoreMLBackend.generate_compile_specs(
        minimum_deployment_target=target,
        compute_precision=getattr(coremltools.precision, COREML_PRECISIONS[options.precision]),
    )
    return CoreMLPartitioner(compile_specs=specs)
