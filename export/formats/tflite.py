"""TFLite / LiteRT: each fixed length is a named signature ("seq128", ...) of one .tflite file whose weights are
stored once (litert-torch); fp16 weights, dynamic-range int8, full-integer int8 (int8-static: int8 weights and
activations, calibrated on real QA windows at each signature's own length), full-integer 16x8 (a16w8: int8 weights,
int16 activations, calibrated alike) and 4-bit weights (int4) are ai-edge-quantizer recipes applied after.

Fixed lengths only: litert-torch cannot lower a symbolic sequence dim, and a converted graph does not resize.

The file is also what the TFLite Task Library's BertQuestionAnswerer (Android / iOS) opens as is, by default:
three int32 inputs (token_type_ids too, accepted and ignored by architectures without segment embeddings),
the 384-token signature first (the library runs subgraph 0 with 384 tokens), and Model Metadata with the
WordPiece vocab packed in (export/tflite_metadata.py). The manifest's graph.task_library says whether it can.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pocketbert.errors import NotRunnableHere, PocketbertError, require_module
from pocketbert.export.base import Exporter, ExportOptions, Runner
from pocketbert.export.calibration import calibration_windows
from pocketbert.export.registry import register_format
from pocketbert.export.task import MASK_VALUE, TaskModule
from pocketbert.export.tflite_metadata import (
    TASK_LIBRARY_SEQ_LEN,
    add_classifier_metadata,
    add_qa_metadata,
    labels_blockers,
    metadata_blockers,
    runtime_blockers,
)
from pocketbert.fsutil import raise_if_interrupted
from pocketbert.manifest import output_names
from pocketbert.modeling import load_tokenizer
from pocketbert.sessions import applied, settings_of, tflite_interpreter

# Every signature takes these, in this order: the Task Library feeds ids, mask and segment ids.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

SIGNATURE_PREFIX = "seq"
# Precision -> ai-edge-quantizer recipe. litert-torch's own PT2E int8 converts but fails at run time
# (embedding_lookup zero_point != 0), so quantization runs on the converted flatbuffer instead.
QUANTIZATION_RECIPES = {"fp32": None, "fp16": "weight_only_fp16", "int8": "dynamic_wi8_afp32",
                        "int8-static": "static_wi8_ai8", "a16w8": "static_wi8_ai16", "int4": "dynamic_wi4b32_afp32"}
# The statically calibrated recipes: their activations' bits (INT8 / INT16 tensors in the flatbuffer).
STATIC_ACTIVATION_BITS = {"static_wi8_ai8": 8, "static_wi8_ai16": 16}
# int4: blocks of 32 weights along the input, the LiteRT interpreter's (XNNPACK's) blockwise 4-bit kernels for
# FULLY_CONNECTED and EMBEDDING_LOOKUP; same blocks as the ONNX and ExecuTorch int4 artifacts.
INT4_BLOCK_SIZE = 32


def signature_name(length: int) -> str:
    return f"{SIGNATURE_PREFIX}{length}"


def signature_length(name: str) -> int | None:
    digits = name[len(SIGNATURE_PREFIX):]
    return int(digits) if name.startswith(SIGNATURE_PREFIX) and digits.isdigit() else None


class NamedOutputs(nn.Module):
    """The task module with dict outputs: the signatures then name them (start_logits / end_logits, or logits)."""

    def __init__(self, module: TaskModule):
        super().__init__()
        self.module = module

    def forward(self, input_ids, attention_mask, token_type_ids):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return dict(zip(self.module.output_names, self.module(*(given[name] for name in self.module.input_names))))


def quantization_recipe(precision: str) -> list | None:
    """The ai-edge-quantizer recipe (a JSON-able list of rules) for a precision; None keeps fp32."""
    name = QUANTIZATION_RECIPES[precision]
    if name is None:
        return None
    aeq = require_module("ai_edge_quantizer", "ai-edge-quantizer")
    if name == "dynamic_wi8_afp32":
        return aeq.recipe.dynamic_wi8_afp32()
    operation = aeq.qtyping.TFLOperationName
    manager = aeq.recipe_manager.RecipeManager()
    if name == "dynamic_wi4b32_afp32":
        # Weights of every FULLY_CONNECTED and EMBEDDING_LOOKUP to 4 bits; activations stay fp32 between ops and are
        # quantized to int8 on the fly inside each FULLY_CONNECTED.
        manager.add_dynamic_config(regex=".*", operation_name=operation.ALL_SUPPORTED, num_bits=4,
                                   granularity=aeq.qtyping.QuantGranularity.BLOCKWISE_32)
        return manager.get_quantization_recipe()
    if name in STATIC_ACTIVATION_BITS:
        manager.add_static_config(regex=".*", operation_name=operation.ALL_SUPPORTED,
                                  activation_num_bits=STATIC_ACTIVATION_BITS[name],
                                  weight_num_bits=8)
        # A second scope (a rule for all ops in the same scope would replace the one above; later scopes win):
        # the static recipe leaves the embedding tables fp32, so they become int8 tables whose lookup returns the
        # rows as float, quantized to int8 right after (a gather does no arithmetic); and the logits leave through
        # a DEQUANTIZE, so every app and runtime reads float logits as from the other precisions.
        manager.add_dynamic_config(regex=".*$", operation_name=operation.EMBEDDING_LOOKUP, num_bits=8)
        manager.add_quantization_config(regex=".*$", operation_name=operation.OUTPUT,
                                        algorithm_key=aeq.algorithm_manager.AlgorithmName.NO_QUANTIZE)
        return manager.get_quantization_recipe()
    # fp16 weights: FLOAT_CASTING weight-only stores FULLY_CONNECTED / EMBEDDING_LOOKUP weights as fp16 with an
    # explicit DEQUANTIZE in front, so compute stays fp32 and every TFLite runtime can run it.
    manager.add_weight_only_config(regex=".*", operation_name=aeq.qtyping.TFLOperationName.ALL_SUPPORTED,
                                   num_bits=16, algorithm_key=aeq.algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


def _operators(model: bytes):
    """(subgraph, operator, builtin op name or None for a custom op, its operator code) for every operator of every
    signature, read from the flatbuffer itself."""
    schema = require_module("ai_edge_litert.schema_py_generated", "ai-edge-litert")
    builtin_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    flat = schema.Model.GetRootAsModel(model, 0)
    codes = [flat.OperatorCodes(i) for i in range(flat.OperatorCodesLength())]
    for s in range(flat.SubgraphsLength()):
        subgraph = flat.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            code = codes[operator.OpcodeIndex()]
            # Builtin codes above 127 live in BuiltinCode(); older files only fill DeprecatedBuiltinCode().
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = None if builtin == schema.BuiltinOperator.CUSTOM else builtin_names.get(builtin, str(builtin))
            yield subgraph, operator, name, code


def operator_inventory(model: bytes) -> tuple[Counter, list[str], dict[str, int]]:
    """(builtin op name -> count over all signatures, sorted custom op names, builtin op name -> highest version)."""
    histogram: Counter[str] = Counter()
    custom: set[str] = set()
    versions: dict[str, int] = {}
    for _, _, name, code in _operators(model):
        if name is None:
            custom.add((code.CustomCode() or b"?").decode())
        else:
            histogram[name] += 1
            versions[name] = max(versions.get(name, 0), code.Version())
    return histogram, sorted(custom), versions


def operator_dtypes(model: bytes) -> Counter:
    """(op name, its input tensor types, its output tensor types) -> count over all signatures, e.g.
    ("FULLY_CONNECTED", ("INT8", "INT8"), ("INT8",)): which ops compute in which types after quantization."""
    schema = require_module("ai_edge_litert.schema_py_generated", "ai-edge-litert")
    type_names = {code: name for name, code in vars(schema.TensorType).items() if not name.startswith("_")}
    found: Counter[tuple[str, tuple[str, ...], tuple[str, ...]]] = Counter()
    for subgraph, operator, name, _ in _operators(model):
        def types(indices, count):
            return tuple(type_names[subgraph.Tensors(indices(i)).Type()] for i in range(count) if indices(i) >= 0)

        found[name or "CUSTOM", types(operator.Inputs, operator.InputsLength()),
              types(operator.Outputs, operator.OutputsLength())] += 1
    return found


def integer_op_split(dtypes: Counter, activations: str) -> tuple[dict, dict]:
    """Op counts (all signatures) of the ops that take `activations`-typed values in and give them out (INT8 inputs
    are weights, INT32 / INT64 ones indices, shapes and biases), and of all others: float ops, the conversions,
    shape arithmetic, lookups."""
    integer_ops: Counter[str] = Counter()
    other_ops: Counter[str] = Counter()
    for (name, inputs, outputs), count in dtypes.items():
        integer = (activations in inputs and set(inputs) <= {activations, "INT8", "INT32", "INT64"}
                   and set(outputs) == {activations})
        (integer_ops if integer else other_ops)[name] += count
    return dict(integer_ops.most_common()), dict(other_ops.most_common())


def float_compute_ops(dtypes: Counter) -> dict:
    """Op counts (all signatures) of the ops that compute in float (a float input and output), the conversions
    between float and integer excluded: what a full-integer accelerator would have to hand back to the CPU."""
    found: Counter[str] = Counter()
    for (name, inputs, outputs), count in dtypes.items():
        if name not in ("QUANTIZE", "DEQUANTIZE") and "FLOAT32" in inputs and "FLOAT32" in outputs:
            found[name] += count
    return dict(found.most_common())


def subgraph_io(model: bytes, index: int = 0) -> tuple[list[str], list[str]]:
    """Our input and output names of subgraph `index`, in the subgraph's tensor order (its signature maps them)."""
    schema = require_module("ai_edge_litert.schema_py_generated", "ai-edge-litert")
    flat = schema.Model.GetRootAsModel(model, 0)
    signature = next(flat.SignatureDefs(i) for i in range(flat.SignatureDefsLength())
                     if flat.SignatureDefs(i).SubgraphIndex() == index)
    subgraph = flat.Subgraphs(index)

    def ordered(tensors, count, entries, entry_count) -> list[str]:
        by_tensor = {entries(j).TensorIndex(): entries(j).Name().decode() for j in range(entry_count)}
        return [by_tensor[tensors(i)] for i in range(count)]

    return (ordered(subgraph.Inputs, subgraph.InputsLength(), signature.Inputs, signature.InputsLength()),
            ordered(subgraph.Outputs, subgraph.OutputsLength(), signature.Outputs, signature.OutputsLength()))


SOFTMAX_INPUT_MIN_REACH = 1.0


def unmasked_softmax_ranges(model: bytes, ranges: dict) -> list[str]:
    """Give each SOFTMAX input that is an ADD of attention scores and the additive mask the range of the scores alone;
    returns the tensors changed.

    Calibrated as they are, the -10000 of padded positions stretch that range to about [-10000, 100], one int8 step
    of ~40: every real score would round to the same few values. With the scores' own range, padded positions
    saturate at its minimum, which is far enough below each row's maximum for softmax to give them weight 0.
    The range reaches at least SOFTMAX_INPUT_MIN_REACH below zero: the interpreter's integer ADD rescales the mask's
    range into its output's by a multiplier that must stay below 1, and aborts the process otherwise (int16: an output
    range under 2 x 10000 / 2^15 ~ 0.61; int8: under ~0.02), as it did for a small random model's tiny scores."""
    # flatbuffer SubGraph and Operator objects of ai-edge-litert's generated schema (imported lazily, so Any)
    subgraphs: dict[int, tuple[Any, list[tuple[Any, str | None]]]] = {}
    for subgraph, operator, name, _ in _operators(model):
        subgraphs.setdefault(id(subgraph), (subgraph, []))[1].append((operator, name))
    def tensor_name(subgraph, index: int) -> str:
        return subgraph.Tensors(index).Name().decode()

    changed = []
    for subgraph, operators in subgraphs.values():
        producers = {operator.Outputs(0): (operator, name) for operator, name in operators if operator.OutputsLength()}
        for operator, name in operators:
            add, producer = producers.get(operator.Inputs(0), (None, None))
            if name != "SOFTMAX" or producer != "ADD" or add is None:
                continue
            masked = tensor_name(subgraph, operator.Inputs(0))
            inputs = [ranges.get(tensor_name(subgraph, add.Inputs(i))) for i in range(add.InputsLength())]
            summands = [summand for summand in inputs if summand and "min" in summand]
            if masked not in ranges or len(summands) != len(inputs):
                continue
            # The mask reaches MASK_VALUE (where the calibration windows had padding); the scores do not.
            scores = [summand for summand in summands if float(np.min(summand["min"])) > MASK_VALUE / 2]
            if len(scores) == 1 and len(summands) == 2:
                ranges[masked] = {**ranges[masked], "min": np.minimum(scores[0]["min"], -SOFTMAX_INPUT_MIN_REACH)}
                changed.append(masked)
    return changed


def calibration_sets(module: TaskModule, options: ExportOptions, folder: Path) -> dict[str, tuple[list, dict]]:
    """Signature name -> (its calibration feeds, one {input: int32 [1, length]} per window; the manifest's record of
    them): real QA windows at each signature's own length, since padding and truncation differ between lengths."""
    tokenizer = load_tokenizer(folder)  # the export writes the tokenizer into the folder first
    sets = {}
    for length in options.seq_lens:
        calibration = calibration_windows(tokenizer, module.input_names, length, options.calibration, task=module.task)
        windows = calibration.windows
        # Architectures without segment embeddings accept token_type_ids and ignore it: zeros, as the tokenizer's.
        zeros = np.zeros_like(windows["input_ids"])
        feeds = [{name: windows.get(name, zeros)[i:i + 1].astype(np.int32) for name in INPUT_NAMES}
                 for i in range(len(zeros))]
        sets[signature_name(length)] = (feeds, calibration.facts)
    return sets


def quantization_facts(precision: str, model: bytes, calibration: dict | None, unmasked: list[str]) -> dict:
    """The manifest's record of what int8-static, a16w8 and int4 quantized, read back from the quantized file."""
    recipe = QUANTIZATION_RECIPES[precision]
    bits = STATIC_ACTIVATION_BITS.get(recipe) if recipe else None
    if bits:
        assert calibration is not None  # the static recipes are calibrated before they are quantized
        dtypes = operator_dtypes(model)
        integer_ops, other_ops = integer_op_split(dtypes, f"INT{bits}")
        return {
            "weights": "int8 symmetric, per output channel; embedding tables int8 per row",
            "activations": ("int8 per tensor, asymmetric" if bits == 8 else
                            "int16 per tensor, symmetric (TFLite's 16x8 quantization)") + ", ranges from calibration",
            "calibration_method": "MinMax (ai-edge-quantizer min_max_uniform_quantize: the smallest and largest value "
                                  "each tensor took over the calibration windows)",
            "calibration": {name: facts for name, (_, facts) in calibration.items()},
            "softmax_inputs_with_the_scores_range": len(unmasked),
            "softmax_inputs_means": "attention scores + additive mask: quantized over the scores' own range (padded "
                                    "positions saturate at its minimum, weight 0 after softmax), not the mask's -10000",
            "outputs": f"float32 logits through a DEQUANTIZE of the int{bits} result",
            "integer_ops": integer_ops,
            "integer_ops_means": f"int{bits} activations in and out (weights int8; INT32 / INT64 inputs are indices, "
                                 "shapes and biases); counts over all signatures",
            "other_ops": other_ops,
            "float_compute_ops": float_compute_ops(dtypes),
            "float_compute_ops_means": "ops left computing in float (ai-edge-quantizer has no integer rule for them "
                                       "at this activation width), between a DEQUANTIZE and a QUANTIZE",
        }
    if precision == "int4":
        weights: Counter[str] = Counter()
        for (name, inputs, _), count in operator_dtypes(model).items():
            if name in ("FULLY_CONNECTED", "EMBEDDING_LOOKUP"):
                weights[f"{name} {'int4' if 'INT4' in inputs else 'float'}"] += count
        return {
            "weights": f"int4 symmetric, blocks of {INT4_BLOCK_SIZE} along the input, fp scales; every linear layer "
                       "and embedding table",
            "block_size": INT4_BLOCK_SIZE,
            "activations": "fp32 between ops; int8 on the fly inside each FULLY_CONNECTED (dynamic range)",
            "weight_ops": dict(sorted(weights.items())),
            "weight_ops_means": "ops with constant weights by the type of those weights; counts over all signatures",
        }
    return {}


def signature_order(seq_lens: tuple[int, ...]) -> list[int]:
    """The Task Library's length first (it runs subgraph 0), then the others ascending."""
    return sorted(seq_lens, key=lambda n: (n != TASK_LIBRARY_SEQ_LEN, n))


@register_format
class TfliteExporter(Exporter):
    name = "tflite"
    suffix = ".tflite"
    runtime, runtime_module, runtime_package = "litert", "ai_edge_litert.interpreter", "ai-edge-litert"
    precisions = ("fp32", "fp16", "int8", "int8-static", "a16w8", "int4")
    calibrated_precisions = ("int8-static", "a16w8")
    input_dtype = "int32"
    supports_dynamic_length = False

    def input_names(self, module: TaskModule) -> tuple[str, ...]:
        return INPUT_NAMES

    def export(self, module: TaskModule, options: ExportOptions, path: Path) -> dict:
        litert_torch = require_module("litert_torch", "litert-torch")
        calibration = None
        if options.precision in self.calibrated_precisions:  # first: a file that is not SQuAD JSON fails in seconds
            calibration = calibration_sets(module, options, path.parent)
        converter = litert_torch.Converter()
        wrapped = NamedOutputs(module).eval()
        for length in signature_order(options.seq_lens):
            # Keyword samples give the signature named inputs (positional ones become args_0, args_1, ...).
            sample = {name: torch.ones(1, length, dtype=torch.long) for name in INPUT_NAMES}
            converter.add_signature(signature_name(length), wrapped, sample_kwargs=sample)
        progress = require_module("litert_torch.progress", "litert-torch").console
        quiet, progress.quiet = progress.quiet, True  # its task tree (~60 lines an export) would bury our one bar
        try:
            model = bytes(converter.convert().model_content())
        finally:
            progress.quiet = quiet
        raise_if_interrupted()  # Ctrl-C inside the converter's jax callbacks can be swallowed there

        recipe = quantization_recipe(options.precision)
        unmasked = []
        if recipe is not None:
            aeq = require_module("ai_edge_quantizer", "ai-edge-quantizer")
            quantizer = aeq.quantizer.Quantizer(model, recipe)
            ranges = None
            if calibration is not None:
                ranges = quantizer.calibrate({name: feeds for name, (feeds, _) in calibration.items()},
                                             num_threads=os.cpu_count() or 1)
                unmasked = unmasked_softmax_ranges(model, ranges)
            # Weights are shared by all signatures, so each is quantized once per signature to the same values:
            # that is what the quantizer's "overriding other previously quantized data" warnings report.
            # An all-zero block or row (a padding token's embedding) divides 0 by its 0 scale; it dequantizes to 0.
            with np.errstate(divide="ignore", invalid="ignore"):
                model = bytes(quantizer.quantize(ranges).quantized_model)

        histogram, custom_ops, op_versions = operator_inventory(model)
        if custom_ops:
            flex = [op for op in custom_ops if op.startswith("Flex")]
            kind = "TensorFlow Flex" if flex else "custom"
            raise PocketbertError(
                f"the converted model needs {kind} ops {custom_ops}, which stock LiteRT runtimes lack; nothing was "
                f"written — export another format (onnx, executorch) or report the model architecture"
            )
        model, task_library = self.with_task_library_metadata(model, path.parent, options, op_versions, module)
        path.write_bytes(model)
        return {
            "converter": "litert-torch",
            "signatures": {signature_name(n): {"length": n, "inputs": list(INPUT_NAMES), "outputs": list(module.output_names),
                           "subgraph": i} for i, n in enumerate(signature_order(options.seq_lens))},
            "ignored_inputs": [name for name in INPUT_NAMES if name not in module.input_names],
            "op_versions": dict(sorted(op_versions.items())),
            "task_library": task_library,
            "op_histogram": dict(sorted(histogram.items())),
            "operators": sum(histogram.values()),
            "flex_ops": [],
            "custom_ops": [],
            "quantization": None if recipe is None else {"tool": "ai-edge-quantizer",
                                                         "recipe": QUANTIZATION_RECIPES[options.precision],
                                                         "rules": recipe,
                                                         **quantization_facts(options.precision, model, calibration, unmasked)},
        }

    @staticmethod
    def with_task_library_metadata(model: bytes, folder: Path, options: ExportOptions,
                                   op_versions: dict[str, int], module: TaskModule) -> tuple[bytes, dict]:
        """The model with Task Library metadata where the tokenizer allows (BertQuestionAnswerer's for QA,
        BertNLClassifier's with labels.txt packed in for classifiers), and the manifest's verdict."""
        question_answering = module.task.masked
        no_metadata = metadata_blockers(folder)
        if not question_answering:
            no_metadata += labels_blockers(folder, module.task.labels_file)
        if not no_metadata:
            inputs, outputs = subgraph_io(model)
            if question_answering:
                model = add_qa_metadata(model, inputs, outputs, folder / "vocab.txt",
                                        f"Extractive QA, {options.precision}: logits over the tokens of [CLS] question "
                                        f"[SEP] context [SEP] for the answer's first and last token.")
            else:
                labels_file = str(module.task.labels_file)
                model = add_classifier_metadata(model, inputs, outputs, folder / "vocab.txt", folder / labels_file,
                                                f"Text classification, {options.precision}: logits of [CLS] text [SEP] "
                                                f"over the labels of {labels_file} (one a line, in logit order); the "
                                                f"label is the one with the highest.")
        blockers = no_metadata + runtime_blockers(folder, options.precision, options.seq_lens, op_versions,
                                                  question_answering=question_answering)
        verdict = {"bert_question_answerer" if question_answering else "bert_nl_classifier": not blockers,
                   "metadata": not no_metadata, "subgraph_0": signature_name(signature_order(options.seq_lens)[0])}
        if blockers:
            verdict["why_not"] = blockers
        return model, verdict

    def accepted_lengths(self, module: TaskModule, options: ExportOptions) -> dict:
        facts = super().accepted_lengths(module, options)  # each length is its own named signature
        facts["sequence"] = {"kind": "signatures", "signatures": {signature_name(n): n for n in options.seq_lens}}
        return facts

    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        require_module("ai_edge_litert.interpreter", "ai-edge-litert")
        settings = settings_of(manifest)
        interpreter, _ = tflite_interpreter(path, settings, threads)
        names = tuple(i["name"] for i in manifest["inputs"])
        outputs_named = output_names(manifest)
        runners = {}
        for signature, io in interpreter.get_signature_list().items():
            length = signature_length(signature)
            if length is None:
                continue
            if sorted(io["inputs"]) != sorted(names):
                raise PocketbertError(f"signature {signature} of '{path}' takes {sorted(io['inputs'])}, but the "
                                      f"manifest says {list(names)}; re-export the artifact folder")
            runners[length] = interpreter.get_signature_runner(signature)
        if not runners:
            raise PocketbertError(f"'{path}' has no {SIGNATURE_PREFIX}N signatures; re-export it with pocketbert export")

        def predict(feed: dict[str, np.ndarray]):
            length = feed[names[0]].shape[1]
            # The Runner hands over int64; the converter made every integer input int32.
            outputs = runners[length](**{name: feed[name].astype(np.int32) for name in names})
            return tuple(outputs[name] for name in outputs_named)

        return Runner(predict, names, batch_one=True, lengths=tuple(sorted(runners)),
                      info={"signatures": [signature_name(n) for n in sorted(runners)], **applied(settings, threads)})

    def profile_ops(self, path: Path, manifest: dict, feed: dict[str, np.ndarray], warmup: int, runs: int,
                    threads: int | None = None) -> dict:
        raise NotRunnableHere("ai-edge-litert's Python interpreter exposes no per-op profiler; LiteRT's benchmark_model "
                              "tool (--enable_op_profiling=true, built from its sources) reports one")
