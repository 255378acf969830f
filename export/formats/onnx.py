"""ONNX: fp32 with dynamic batch and sequence (torch.onnx dynamo exporter), int8 by ORT dynamic quantization."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketbert.errors import require_module
from pocketbert.export.base import Exporter, ExportOptions, Runner
from pocketbert.export.registry import register_format
from pocketbert.export.task import OUTPUT_NAMES, QAModule

OPSET = 20
# The folder layout of a Hugging Face ONNX model: transformers.js reads onnx/model.onnx (fp32) and
# onnx/model_quantized.onnx ("q8"); optimum's from_pretrained(folder) finds either by its glob of **/*.onnx.
ARTIFACT_NAMES = {"fp32": "onnx/model.onnx", "int8": "onnx/model_quantized.onnx"}
TRANSFORMERS_JS_DTYPES = {"fp32": "fp32", "int8": "q8"}


@register_format
class OnnxExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"
    runtime, runtime_module, runtime_package = "onnxruntime", "onnxruntime", "onnxruntime"
    precisions = ("fp32", "int8")
    batch_dynamic = True

    def artifact_name(self, options: ExportOptions) -> str:
        return ARTIFACT_NAMES[options.precision]

    def loader_config(self, options: ExportOptions) -> dict:
        # transformers.js picks the file by dtype; without this it would look for the fp32 file in an int8 folder.
        return {"transformers.js_config": {"dtype": TRANSFORMERS_JS_DTYPES[options.precision]}}

    def io_spec(self, module, options):
        # ONNX always keeps batch and sequence symbolic, whatever lengths were asked for.
        return super().io_spec(module, ExportOptions(**{**options.to_dict(), "dynamic": True}))

    def accepted_lengths(self, module, options):
        return super().accepted_lengths(module, ExportOptions(**{**options.to_dict(), "dynamic": True}))

    def export(self, module: QAModule, options: ExportOptions, path: Path) -> dict:
        import torch

        require_module("onnxscript", "onnxscript")
        length = max(options.seq_lens)
        sample = tuple(torch.ones(2, length, dtype=torch.long) for _ in module.input_names)
        batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=options.max_seq_len)
        fp32_path = path if options.precision == "fp32" else path.with_name("fp32" + path.suffix)
        program = torch.onnx.export(
            module, sample, dynamo=True, opset_version=OPSET, input_names=list(module.input_names),
            output_names=list(OUTPUT_NAMES), dynamic_shapes={n: {0: batch, 1: seq} for n in module.input_names},
            external_data=False, verbose=False,
        )
        program.save(str(fp32_path))
        if options.precision == "int8":
            quantization = require_module("onnxruntime.quantization", "onnxruntime")
            quantization.quantize_dynamic(str(fp32_path), str(path), weight_type=quantization.QuantType.QInt8,
                                          per_channel=True)
            fp32_path.unlink()
        onnx = require_module("onnx", "onnx")
        graph = onnx.load(str(path), load_external_data=False).graph
        ops = sorted({node.op_type for node in graph.node})
        return {"opset": OPSET, "nodes": len(graph.node), "op_types": ops}

    def load(self, path: Path, manifest: dict, threads: int | None = None) -> Runner:
        ort = require_module("onnxruntime", "onnxruntime")
        settings = ort.SessionOptions()
        # Idle worker threads otherwise spin after each call and steal the cores from whatever runs next
        # (benchmarks interleave models on the same cores).
        settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            settings.intra_op_num_threads = threads
            settings.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        names = tuple(i["name"] for i in manifest["inputs"])

        def predict(feed: dict[str, np.ndarray]):
            start, end = session.run(list(OUTPUT_NAMES), feed)
            return start, end

        return Runner(predict, names, batch_one=False, info={"providers": session.get_providers()})
