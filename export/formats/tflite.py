"""TFLite / LiteRT: each fixed length is a named signature ("seq128", ...) of one .tflite file whose weights are
stored once (litert-torch); fp16 weights and dynamic-range int8 are ai-edge-quantizer recipes applied after.

Fixed lengths only: litert-torch cannot lower a symbolic sequence dim, and a converted graph does not resize.

The file is also what the TFLite Task Library's BertQuestionAnswerer (Android / iOS) opens as is, by default:
three int32 inputs (token_type_ids too, accepted and ignored by architectures without segment embeddings),
the 384-token signature first (the library runs subgraph 0 with 384 tokens), and Model Metadata with the
WordPiece vocab packed in (export/tflite_metadata.py). The manifest's graph.task_library says whether it can.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pocketbert.errors import PocketbertError, require_module
from pocketbert.export.base import Exporter, ExportOptions, Runner
from pocketbert.export.registry import register_format
from pocketbert.export.task import OUTPUT_NAMES, QAModule
from pocketbert.export.tflite_metadata import TASK_LIBRARY_SEQ_LEN, add_qa_metadata, metadata_blockers, runtime_blockers
from pocketbert.fsutil import raise_if_interrupted

# Every signature takes these, in this order: the Task Library feeds ids, mask and segment ids.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

SIGNATURE_PREFIX = "seq"
# Precision -> ai-edge-quantizer recipe. litert-torch's own PT2E int8 converts but fails at run time
# (embedding_lookup zero_point != 0), so quantization runs on the converted flatbuffer instead.
QUANTIZATION_RECIPES = {"fp32": None, "fp16": "weight_only_fp16", "int8": "dynamic_wi8_afp32"}


def signature_name(length: int) -> str:
    return f"{SIGNATURE_PREFIX}{length}"


def signature_length(name: str) -> int | None:
    digits = name[len(SIGNATURE_PREFIX):]
    return int(digits) if name.startswith(SIGNATURE_PREFIX) and digits.isdigit() else None


class NamedOutputs(nn.Module):
    """The QA module with dict outputs: the signatures then name them start_logits / end_logits."""

    def __init__(self, qa: QAModule):
        super().__init__()
        self.qa = qa

    def forward(self, input_ids, attention_mask, token_type_ids):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return dict(zip(OUTPUT_NAMES, self.qa(*(given[name] for name in self.qa.input_names))))


def quantization_recipe(precision: str) -> list | None:
    """The ai-edge-quantizer recipe (a JSON-able list of rules) for a precision; None keeps fp32."""
    name = QUANTIZATION_RECIPES[precision]
    if name is None:
        return None
    aeq = require_module("ai_edge_quantizer", "ai-edge-quantizer")
    if name == "dynamic_wi8_afp32":
        return aeq.recipe.dynamic_wi8_afp32()
    # fp16 weights: FLOAT_CASTING weight-only stores FULLY_CONNECTED / EMBEDDING_LOOKUP weights as fp16 with an
    # explicit DEQUANTIZE in front, so compute stays fp32 and every TFLite runtime can run it.
    manager = aeq.recipe_manager.RecipeManager()
    manager.add_weight_only_config(regex=".*", operation_name=aeq.qtyping.TFLOperationName.ALL_SUPPORTED,
                                   num_bits=16, algorithm_key=aeq.algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


def operator_inventory(model: bytes) -> tuple[Counter, list[str], dict[str, int]]:
    """(builtin op name -> count over all signatures, sorted custom op names, builtin op name -> highest version)
    read from the flatbuffer itself."""
    schema = require_module("ai_edge_litert.schema_py_generated", "ai-edge-litert")
    builtin_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    flat = schema.Model.GetRootAsModel(model, 0)
    codes = [flat.OperatorCodes(i) for i in range(flat.OperatorCodesLength())]
    histogram, custom, versions = Counter(), set(), {}
    for s in range(flat.SubgraphsLength()):
        subgraph = flat.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            code = codes[subgraph.Operators(o).OpcodeIndex()]
            # Builtin codes above 127 live in BuiltinCode(); older files only fill DeprecatedBuiltinCode().
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                custom.add((code.CustomCode() or b"?").decode())
            else:
                name = builtin_names.get(builtin, str(builtin))
                histogram[name] += 1
                versions[name] = max(versions.get(name, 0), code.Version())
    return histogram, sorted(custom), versions


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


def signature_order(seq_lens: tuple[int, ...]) -> list[int]:
    """The Task Library's length first (it runs subgraph 0), then the others ascending."""
    return sorted(seq_lens, key=lambda n: (n != TASK_LIBRARY_SEQ_LEN, n))


@register_format
class TfliteExporter(Exporter):
    name = "tflite"
    suffix = ".tflite"
    runtime, runtime_module, runtime_package = "litert", "ai_edge_litert.interpreter", "ai-edge-litert"
    precisions = ("fp32", "fp16", "int8")
    input_dtype = "int32"
    supports_dynamic_length = False

    def input_names(self, module: QAModule) -> tuple[str, ...]:
        return INPUT_NAMES

    def export(self, module: QAModule, options: ExportOptions, path: Path) -> dict:
        litert_torch = require_module("litert_torch", "litert-torch")
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
        if recipe is not None:
            aeq = require_module("ai_edge_quantizer", "ai-edge-quantizer")
            # Weights are shared by all signatures, so each is quantized once per signature to the same values:
            # that is what the quantizer's "overriding other previously quantized data" warnings report.
            model = bytes(aeq.quantizer.Quantizer(model, recipe).quantize().quantized_model)

        histogram, custom_ops, op_versions = operator_inventory(model)
        if custom_ops:
            flex = [op for op in custom_ops if op.startswith("Flex")]
            kind = "TensorFlow Flex" if flex else "custom"
            raise PocketbertError(
                f"the converted model needs {kind} ops {custom_ops}, which stock LiteRT runtimes lack; nothing was "
                f"written — export another format (onnx, executorch) or report the model architecture"
            )
        model, task_library = self.with_task_library_metadata(model, path.parent, options, op_versions)
        path.write_bytes(model)
        return {
            "converter": "litert-torch",
            "signatures": {signature_name(n): {"length": n, "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES),
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
                                                         "rules": recipe},
        }

    @staticmethod
    def with_task_library_metadata(model: bytes, folder: Path, options: ExportOptions,
                                   op_versions: dict[str, int]) -> tuple[bytes, dict]:
        """The model with BertQuestionAnswerer metadata where the tokenizer allows, and the manifest's verdict."""
        no_metadata = metadata_blockers(folder)
        if not no_metadata:
            inputs, outputs = subgraph_io(model)
            model = add_qa_metadata(model, inputs, outputs, folder / "vocab.txt",
                                    f"Extractive QA, {options.precision}: logits over the tokens of [CLS] question "
                                    f"[SEP] context [SEP] for the answer's first and last token.")
        blockers = no_metadata + runtime_blockers(folder, options.precision, options.seq_lens, op_versions)
        verdict = {"bert_question_answerer": not blockers, "metadata": not no_metadata,
                   "subgraph_0": signature_name(signature_order(options.seq_lens)[0])}
        if blockers:
            verdict["why_not"] = blockers
        return model, verdict

    def accepted_lengths(self, module: QAModule, options: ExportOptions) -> dict:
        facts = super().accepted_lengths(module, options)  # each length is its own named signature
        facts["sequence"] = {"kind": "signatures", "signatures": {signature_name(n): n for n in options.seq_lens}}
        return facts

    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        interpreter_module = require_module("ai_edge_litert.interpreter", "ai-edge-litert")
        interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=threads)
        names = tuple(i["name"] for i in manifest["inputs"])
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
            return outputs[OUTPUT_NAMES[0]], outputs[OUTPUT_NAMES[1]]

        return Runner(predict, names, batch_one=True, lengths=tuple(sorted(runners)),
                      info={"signatures": [signature_name(n) for n in sorted(runners)], "threads": threads})
