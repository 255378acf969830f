"""Core ML: an .mlpackage mlprogram (fp32, fp16, int8 weights, int4 blockwise weights, 4/6-bit palettized weights).

Converts on any OS; Core ML itself predicts only on macOS. Elsewhere the artifact is loaded and run by the
numpy reference evaluator of ML Programs (export/coreml_mil): validation, `pocketbert eval` and the device
harness's expected outputs then say "reference evaluator (numpy), not Core ML". Every load first checks
the saved spec's inputs, outputs, dtypes and shapes against the manifest.
"""
from __future__ import annotations

import importlib.metadata
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pocketbert.errors import PocketbertError, require_module
from pocketbert.export.base import Exporter, ExportOptions, Runner
from pocketbert.export.coreml_mil import EVALUATOR_RUNTIME, load_program
from pocketbert.export.registry import register_format
from pocketbert.export.task import TaskModule
from pocketbert.manifest import output_names
from pocketbert.modeling import encoder_of, load_tokenizer, tokenizer_contract
from pocketbert.tasks import label_names

if TYPE_CHECKING:  # annotations only: coremltools itself is imported lazily
    from coremltools.models import MLModel

DEFAULT_DEPLOYMENT_TARGET = "iOS17"
# Compressed weights (constexpr ops) need iOS16 / macOS13; phones and Macs are what we ship to.
TARGET_FAMILIES = ("iOS", "macOS")
MIN_TARGET = "iOS16"
# Several inputs with enumerated shapes, and 4-bit or blockwise quantized weights (constexpr_blockwise_shift_scale),
# exist from iOS18 / macOS15 on (coremltools checks both).
IOS18 = "iOS18"
INT4_BLOCK_SIZE = 32

# Weight compression applied after conversion; compute stays fp16, as on the Neural Engine. coremltools compresses
# every weight constant of more than 2048 elements (its default threshold; stated here so the manifest says it):
# linear/matmul weights and the embedding tables alike, never biases or LayerNorm parameters.
WEIGHT_COMPRESSION = {
    "int8": {"method": "linear_quantize_weights", "bits": 8, "mode": "linear_symmetric", "dtype": "int8",
             "granularity": "per_channel"},
    # 4-bit symmetric (values -7..7), one fp16 scale per 32 consecutive values along each weight's input axis.
    "int4": {"method": "linear_quantize_weights", "bits": 4, "mode": "linear_symmetric", "dtype": "int4",
             "granularity": "per_block", "block_size": INT4_BLOCK_SIZE, "weight_threshold": 2048,
             "blocks": "along the input axis of linear/matmul weights and the hidden axis of a gathered embedding "
                       "table (coremltools' axis); along the last (hidden) axis of any other weight, such as a "
                       "position-embedding table the converter folded into a constant added to the embeddings"},
    "palette4": {"method": "palettize_weights", "mode": "kmeans", "nbits": 4, "granularity": "per_tensor"},
    "palette6": {"method": "palettize_weights", "mode": "kmeans", "nbits": 6, "granularity": "per_tensor"},
}
SPEC_DTYPES = {"int32": "INT32", "float32": "FLOAT32"}  # manifest dtype -> ArrayFeatureType name
VOCAB_FILES = ("vocab.txt", "vocab.json", "merges.txt")  # WordPiece / BPE; SentencePiece ships a *.model


def deployment_targets(ct) -> dict:
    """{"iOS17": ct.target.iOS17, ...}: iOS and macOS targets that hold compressed mlprograms."""
    floor = ct.target[MIN_TARGET].value
    return {name: target for name, target in ct.target.__members__.items()
            if name.startswith(TARGET_FAMILIES) and target.value >= floor}


def ios18_needs(options: ExportOptions, input_count: int) -> list[tuple[str, str]]:
    """(why, the refusal's fix) for each feature of this export that Core ML has from iOS18 / macOS15 on only."""
    needs = []
    if shape_mode(options) == "enumerated" and input_count > 1:
        needs.append((f"enumerated lengths on {input_count} inputs",
                      f"Core ML before {IOS18}/macOS15 allows enumerated lengths on one input only, and this model "
                      f"has {input_count}; pass --deployment-target {IOS18}, a single --seq-len, or --dynamic"))
    if options.precision == "int4":
        needs.append(("int4 blockwise weights (constexpr_blockwise_shift_scale)",
                      f"Core ML before {IOS18}/macOS15 has no 4-bit blockwise weights; pass --deployment-target "
                      f"{IOS18} (or macOS15) with --precision int4, or use --precision palette4 for older devices"))
    return needs


def resolve_deployment_target(ct, options: ExportOptions, input_count: int) -> tuple[str, str]:
    """(target name, why): the asked-for target, or iOS17 raised to iOS18 where the export needs it."""
    targets = deployment_targets(ct)
    needs = ios18_needs(options, input_count)
    if options.deployment_target is None:
        if needs:
            return IOS18, (f"default {DEFAULT_DEPLOYMENT_TARGET} raised: "
                           f"{' and '.join(why for why, _ in needs)} need {IOS18}/macOS15")
        return DEFAULT_DEPLOYMENT_TARGET, "default"
    name = options.deployment_target
    if name not in targets:
        raise PocketbertError(f"unknown Core ML deployment target '{name}'; choose one of {', '.join(targets)}")
    if needs and targets[name].value < targets[IOS18].value:
        raise PocketbertError(needs[0][1])
    return name, "requested"


def shape_mode(options: ExportOptions) -> str:
    if options.dynamic:
        return "range"
    return "enumerated" if len(options.seq_lens) > 1 else "fixed"


def sequence_shape(ct, options: ExportOptions):
    """Batch 1 and the sequence axis: enumerated lengths (Neural Engine friendly), one length, or a range."""
    mode = shape_mode(options)
    if mode == "range":
        return ct.Shape((1, ct.RangeDim(options.min_seq_len, options.max_seq_len, default=max(options.seq_lens))))
    if mode == "enumerated":
        return ct.EnumeratedShapes(shapes=[(1, n) for n in options.seq_lens], default=(1, max(options.seq_lens)))
    return ct.Shape((1, options.seq_lens[0]))


# Ops whose weight coremltools knows the input axis of; for any other consumer it blocks along axis 1, which for a
# [1, positions, hidden] constant is 32 positions x every hidden value under one scale (3x the error of rows of 32).
INPUT_AXIS_KNOWN = {"linear", "matmul", "conv", "conv_transpose", "gather"}
MANIFEST_ONLY = ("method", "bits", "blocks")  # facts for the manifest, not coremltools settings


def compress_weights(mlmodel: MLModel, precision: str) -> tuple[MLModel, dict]:
    """(compressed model, facts for the manifest) for a compressed precision; (mlmodel, {}) otherwise."""
    if precision not in WEIGHT_COMPRESSION:
        return mlmodel, {}
    from coremltools.optimize import coreml as cto  # lazy: coremltools takes seconds to import; only Core ML exports need it

    settings = {k: v for k, v in WEIGHT_COMPRESSION[precision].items() if k not in MANIFEST_ONLY}
    method = WEIGHT_COMPRESSION[precision]["method"]
    threshold = settings.get("weight_threshold", 2048)
    # get_weights_metadata also lists weights of exactly `threshold` values, which the compression passes skip.
    eligible = {name: weight for name, weight in cto.get_weights_metadata(mlmodel, weight_threshold=threshold).items()
                if weight.val.size > threshold}
    facts: dict[str, object] = {"weights_above_threshold": len(eligible)}
    if method == "palettize_weights":
        config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(**settings))
        return cto.palettize_weights(mlmodel, config), facts
    by_name = {}
    if settings.get("granularity") == "per_block":
        # A tuple block size: 1 on every axis but the last, as for an embedding table's rows.
        by_name = {name: cto.OpLinearQuantizerConfig(**{**settings, "block_size": (1,) * (weight.val.ndim - 1)
                                                         + (settings["block_size"],)})
                   for name, weight in eligible.items()
                   if not {child.op_type for child in weight.child_ops} <= INPUT_AXIS_KNOWN}
        facts["blocked_along_last_axis"] = sorted(by_name)
    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(**settings), op_name_configs=by_name)
    return cto.linear_quantize_weights(mlmodel, config), facts


def describe_model(mlmodel, module: TaskModule, options: ExportOptions, folder: Path) -> None:
    """What Xcode's model page and `MLModel.modelDescription` show: the task, every input and output, and the
    tokenizer contract a Swift app must reproduce. The tokenizer files are already in `folder` (the export
    writes them first); the vocabulary ships beside the package, not inside it."""
    version = importlib.metadata.version("pocketbert")
    config = module.model.config
    architecture = encoder_of(config).display_name
    checkpoint = config.name_or_path or f"{architecture} with random weights (a pocketbert preset)"
    contract = tokenizer_contract(load_tokenizer(folder), module.input_names, options.max_seq_len, task=module.task)
    vocab_files = sorted(p.name for p in folder.iterdir() if p.name in VOCAB_FILES or p.suffix == ".model")
    lengths = (f"seq from {options.min_seq_len} to {options.max_seq_len}" if options.dynamic
               else f"seq one of {', '.join(map(str, options.seq_lens))}")

    labels = label_names(config) if not module.task.masked else []
    mlmodel.short_description = (
        f"Extractive question answering ({architecture}, {options.precision}): token ids of a question and a context "
        "in, start and end logits over the positions out." if module.task.masked else
        f"Text classification ({architecture}, {options.precision}): token ids of a text in, one logit per label out "
        f"({', '.join(labels)}).")
    mlmodel.author = f"Exported by pocketbert {version} from {checkpoint}"
    mlmodel.license = f"The licence of the source checkpoint ({checkpoint}); pocketbert adds no terms."
    mlmodel.version = f"{version}+{options.precision}"
    pad = f"{contract['pad_token']} (id {contract['pad_token_id']})"
    descriptions = {
        "input_ids": f"Token ids, int32 [1, seq] ({lengths}): {contract['template']}, from the tokenizer files "
                     f"beside this model; pad with {pad}.",
        "attention_mask": "Attention mask, int32 [1, seq]: 1 = real token, 0 = padding.",
        "token_type_ids": f"Segment ids, int32 [1, seq]: {contract['token_type_ids'].get('question')} for the "
                          f"question and its special tokens, {contract['token_type_ids'].get('context')} for the "
                          "context.",
        "start_logits": "Answer-start logits over the positions, float32 [1, seq]: the answer starts at the highest "
                        "context token.",
        "end_logits": "Answer-end logits over the positions, float32 [1, seq]: the answer ends at the highest context "
                      "token at or after the start.",
        "logits": f"Label logits, float32 [1, {len(labels)}], in this order: {', '.join(labels)}; the label is the "
                  "highest (softmax gives probabilities).",
    }
    if not module.task.masked:
        descriptions["input_ids"] = (f"Token ids, int32 [1, seq] ({lengths}): {contract['template']}, from the "
                                     f"tokenizer files beside this model; pad with {pad}.")
        descriptions["token_type_ids"] = "Segment ids, int32 [1, seq]: 0 for every token."
    for name in module.input_names:
        mlmodel.input_description[name] = descriptions[name]
    for name in module.output_names:
        mlmodel.output_description[name] = descriptions[name]
    if labels:  # the label names in logit order, read back with coremltools (user_defined_metadata)
        mlmodel.user_defined_metadata["pocketbert.labels"] = json.dumps(labels)
    mlmodel.user_defined_metadata.update({
        "pocketbert.task": module.task.name,
        "pocketbert.source.checkpoint": str(checkpoint),
        "pocketbert.source.architecture": architecture,
        "pocketbert.precision": options.precision,
        "pocketbert.sequence": lengths,
        "pocketbert.tokenizer.kind": contract["kind"],
        "pocketbert.tokenizer.lower_case": str(contract["lower_case"]).lower(),
        "pocketbert.tokenizer.vocab_files": ", ".join(vocab_files),
        "pocketbert.tokenizer.template": contract["template"],
        "pocketbert.tokenizer.pair_order": str(contract["pair_order"]),
        "pocketbert.tokenizer.truncation": contract["truncation"],
        "pocketbert.tokenizer.max_seq_len": str(contract["max_seq_len"]),
        "pocketbert.tokenizer.max_query_len": str(contract["max_query_len"]),
        "pocketbert.tokenizer.doc_stride": str(contract["doc_stride"]),
        "pocketbert.tokenizer.padding": f"{pad}, {contract['padding_side']} side",
    })


def main_function(spec):
    function = spec.mlProgram.functions["main"]
    return function, function.block_specializations[function.opset]


def compressed_weights(block) -> dict:
    """{"tensors": n, "consumers": {op type: n}}: the weight constants stored compressed (constexpr ops) and the ops
    that read them (gather: embedding tables; matmul/linear: layers), counted from the saved program."""
    compressed = {op.outputs[0].name for op in block.operations if op.type.startswith("constexpr_")}
    consumers = Counter(op.type for op in block.operations for argument in op.inputs.values()
                        for binding in argument.arguments if binding.name in compressed)
    return {"tensors": len(compressed), "consumers": dict(sorted(consumers.items()))}


@register_format
class CoreMLExporter(Exporter):
    name = "coreml"
    suffix = ".mlpackage"
    runtime, runtime_module, runtime_package = "coreml", "coremltools", "coremltools"
    runtime_platforms = ("darwin",)  # MLModel.predict exists on macOS only
    precisions = ("fp32", "fp16", "int8", "int4", "palette4", "palette6")
    input_dtype = "int32"

    def export(self, module: TaskModule, options: ExportOptions, path: Path) -> dict:
        ct = require_module("coremltools", "coremltools")
        target, target_reason = resolve_deployment_target(ct, options, len(module.input_names))
        length = max(options.seq_lens)
        sample = tuple(torch.ones(1, length, dtype=torch.long) for _ in module.input_names)
        dynamic_shapes = None
        if shape_mode(options) != "fixed":
            seq = torch.export.Dim("seq", min=options.min_seq_len, max=options.max_seq_len)
            dynamic_shapes = {name: {1: seq} for name in module.input_names}
        # The default decomposition table: as exported the program is in the training dialect, and an
        # empty table leaves new_ones / __and__, which coremltools 9.0 cannot convert (STACK.md).
        program = torch.export.export(module, sample, dynamic_shapes=dynamic_shapes).run_decompositions()
        shape = sequence_shape(ct, options)
        compute_precision = ct.precision.FLOAT32 if options.precision == "fp32" else ct.precision.FLOAT16
        mlmodel = ct.convert(
            program, convert_to="mlprogram",
            inputs=[ct.TensorType(name=name, shape=shape, dtype=np.int32) for name in module.input_names],
            # float32 outputs whatever the compute precision: the manifest promises one output dtype.
            outputs=[ct.TensorType(name=name, dtype=np.float32) for name in module.output_names],
            minimum_deployment_target=ct.target[target], compute_precision=compute_precision,
            skip_model_load=True,
        )
        mlmodel, compression = compress_weights(mlmodel, options.precision)
        describe_model(mlmodel, module, options, path.parent)
        mlmodel.save(str(path))

        spec = ct.utils.load_spec(str(path))
        function, block = main_function(spec)
        ops = Counter(op.type for op in block.operations)
        return {
            "model_type": "mlprogram",
            "specification_version": spec.specificationVersion,
            "opset": function.opset,
            "deployment_target": target,
            "deployment_target_reason": target_reason,
            "compute_precision": "float32" if options.precision == "fp32" else "float16",
            "weight_compression": WEIGHT_COMPRESSION[options.precision] | compression | compressed_weights(block)
                                  if options.precision in WEIGHT_COMPRESSION else None,
            "shapes": self.shape_facts(options),
            "ops": sum(ops.values()),
            "ops_without_const": sum(n for op, n in ops.items() if op != "const"),
            "op_counts": dict(sorted(ops.items())),
        }

    @staticmethod
    def shape_facts(options: ExportOptions) -> dict:
        mode = shape_mode(options)
        if mode == "range":
            return {"mode": mode, "min": options.min_seq_len, "max": options.max_seq_len,
                    "neural_engine": "flexible ranges usually keep Core ML off the Neural Engine"}
        return {"mode": mode, "lengths": list(options.seq_lens), "neural_engine": "eligible (static shapes)"}

    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        """Core ML itself where it predicts (macOS), else the numpy reference evaluator of the saved program.

        Either way the spec is checked against the manifest first (names, dtypes, shapes), and
        `Runner.info["runtime"]` says which one runs. `threads` does not apply: Core ML schedules itself,
        and the evaluator's matmuls use numpy's BLAS threads.
        """
        checked = check_spec(path, manifest)
        names = tuple(i["name"] for i in manifest["inputs"])
        sequence = manifest["sequence"]
        lengths = None if sequence["dynamic"] else tuple(sequence["lengths"])
        why = self.why_not_runnable_here()
        predict, info = (None, None) if why else core_ml_predictor(path, manifest)
        if predict is None or info is None:  # core_ml_predictor returns both or neither
            predict, info = reference_predictor(path, why or "Core ML could not load the model in this Python",
                                                output_names(manifest))
        return Runner(predict, names, batch_one=True, lengths=lengths, info={**info, "spec": checked})


def core_ml_predictor(path: Path, manifest: dict):
    """(predict, info) with MLModel.predict, or (None, None) where this macOS Python cannot load Core ML."""
    ct = require_module("coremltools", "coremltools")
    # fp32 on CPU only: the GPU and Neural Engine compute in reduced precision, which an fp32
    # comparison against PyTorch would misread as an export error.
    units = ct.ComputeUnit.CPU_ONLY if manifest["precision"] == "fp32" else ct.ComputeUnit.ALL
    model = ct.models.MLModel(str(path), compute_units=units)
    if model.__proxy__ is None:
        return None, None
    names = tuple(i["name"] for i in manifest["inputs"])
    outputs = output_names(manifest)

    def predict(feed: dict[str, np.ndarray]):
        out = model.predict({name: feed[name].astype(np.int32) for name in names})
        return tuple(np.asarray(out[name], dtype=np.float32) for name in outputs)

    return predict, {"runtime": "coreml", "compute_units": units.name}


def reference_predictor(path: Path, why: str, outputs: list[str]):
    """(predict, info) running the saved ML Program op by op with numpy (export/coreml_mil)."""
    program = load_program(path)

    def predict(feed: dict[str, np.ndarray]):
        out = program(feed)
        return tuple(np.asarray(out[name], dtype=np.float32) for name in outputs)

    return predict, {"runtime": EVALUATOR_RUNTIME,
                     "why": f"{why}; the saved program is evaluated instead",
                     **program.describe()}


def check_spec(path: Path, manifest: dict) -> dict:
    """Read the saved spec (no compiling, works on Linux) and compare its interface with the manifest.

    A mismatch is an exporter bug, so it raises: nothing is written for an artifact that does not
    take the inputs its manifest promises.
    """
    ct = require_module("coremltools", "coremltools")
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType  # lazy: coremltools, as above (require_module's error first)

    spec = ct.utils.load_spec(str(path))
    problems = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type is {spec.WhichOneof('Type')}, not mlProgram")
    sequence = manifest["sequence"]
    found_shapes = set()
    for role, declared, expected in (("input", spec.description.input, manifest["inputs"]),
                                     ("output", spec.description.output, manifest["outputs"])):
        names = [feature.name for feature in declared]
        if names != [e["name"] for e in expected]:
            problems.append(f"{role} names {names} != {[e['name'] for e in expected]}")
            continue
        for feature, entry in zip(declared, expected):
            array = feature.type.multiArrayType
            dtype = ArrayFeatureType.ArrayDataType.Name(array.dataType)
            if dtype != SPEC_DTYPES.get(entry["dtype"]):
                problems.append(f"{feature.name} is {dtype}, the manifest says {entry['dtype']}")
            if role == "input":
                shapes, problem = input_shapes(array, sequence)
                found_shapes.add(shapes)
                if problem:
                    problems.append(f"{feature.name}: {problem}")
    if problems:
        raise PocketbertError(f"the Core ML spec of '{path}' does not match its manifest: {'; '.join(problems)}; "
                              "nothing was written — report this export as a bug")
    return {"inputs": [i["name"] for i in manifest["inputs"]], "outputs": [o["name"] for o in manifest["outputs"]],
            "shapes": "; ".join(sorted(found_shapes)), "specification_version": spec.specificationVersion}


def input_shapes(array, sequence: dict) -> tuple[str, str | None]:
    """(what the spec declares, a problem or None) for one [1, seq] input."""
    flexibility = array.WhichOneof("ShapeFlexibility")
    if flexibility == "shapeRange":
        ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
        found = f"range batch {ranges[0][0]}..{ranges[0][1]}, seq {ranges[1][0]}..{ranges[1][1]}"
        expected = [(1, 1), (sequence["min"], sequence["max"])] if sequence["dynamic"] else None
        return found, None if ranges == expected else f"declares {found}, the manifest says {sequence}"
    if flexibility == "enumeratedShapes":
        shapes = sorted(tuple(s.shape) for s in array.enumeratedShapes.shapes)
        found = f"enumerated [1, seq] for seq in {[s[1] for s in shapes]}"
        expected = None if sequence["dynamic"] else [(1, n) for n in sequence["lengths"]]
        return found, None if shapes == expected else f"declares {found}, the manifest says {sequence}"
    shape = tuple(array.shape)
    found = f"fixed {list(shape)}"
    expected_shape = None if sequence["dynamic"] or len(sequence["lengths"]) != 1 else (1, sequence["lengths"][0])
    return found, None if shape == expected_shape else f"declares {found}, the manifest says {sequence}"
