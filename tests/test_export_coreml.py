"""Core ML exporter on tiny checkpoints: every precision, shape modes, deployment targets, numeric validation
(Core ML on macOS, the numpy reference evaluator elsewhere), corrupted packages, Xcode-facing metadata."""
from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("coremltools")

from pocketbert.cli import main as cli_main  # noqa: E402
from pocketbert.errors import PocketbertError  # noqa: E402
from pocketbert.export.api import export_model  # noqa: E402
from pocketbert.export.coreml_mil import EVALUATOR_RUNTIME, NonFiniteValue  # noqa: E402
from pocketbert.export.formats.coreml import check_spec  # noqa: E402
from pocketbert.export.registry import get_format  # noqa: E402

LENGTHS = (32, 64)
ON_MACOS = sys.platform == "darwin"
RUNTIME_HERE = "coreml" if ON_MACOS else EVALUATOR_RUNTIME


def load_spec(folder, manifest):
    import coremltools as ct

    return ct.utils.load_spec(str(folder / manifest["artifact"]))


def main_ops(spec) -> set[str]:
    function = spec.mlProgram.functions["main"]
    return {op.type for op in function.block_specializations[function.opset].operations}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_distilbert_qa):
    """One export per precision, made once: conversion is the slow part of every test here."""
    made = {}

    def export(precision: str):
        if precision not in made:
            out = tmp_path_factory.mktemp("coreml") / precision
            made[precision] = (out, export_model(str(tiny_distilbert_qa), "coreml", out, precision=precision,
                                                 seq_lens=LENGTHS))
        return made[precision]

    return export


@pytest.mark.parametrize("precision, compression_op", [
    ("fp32", None), ("fp16", None), ("int8", "constexpr_blockwise_shift_scale"),
    ("palette4", "constexpr_lut_to_dense"), ("palette6", "constexpr_lut_to_dense"),
])
def test_every_precision_exports_and_passes_the_spec_check(exports, precision, compression_op):
    out, manifest = exports(precision)
    assert (out / "model.mlpackage").is_dir() and (out / "manifest.json").is_file()
    assert json.loads((out / "manifest.json").read_text())["sha256"] == manifest["sha256"]
    spec = load_spec(out, manifest)
    inputs = {f.name: f.type.multiArrayType for f in spec.description.input}
    outputs = {f.name: f.type.multiArrayType for f in spec.description.output}
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    assert list(inputs) == ["input_ids", "attention_mask"] == [i["name"] for i in manifest["inputs"]]
    assert list(outputs) == ["start_logits", "end_logits"]
    int32, float32 = ArrayFeatureType.INT32, ArrayFeatureType.FLOAT32
    assert all(a.dataType == int32 for a in inputs.values()) and all(a.dataType == float32 for a in outputs.values())
    assert all(i["dtype"] == "int32" and i["shape"] == [1, "seq"] for i in manifest["inputs"])
    assert sorted(tuple(s.shape) for s in inputs["input_ids"].enumeratedShapes.shapes) == [(1, 32), (1, 64)]

    graph = manifest["graph"]
    assert graph["compute_precision"] == ("float32" if precision == "fp32" else "float16")
    assert graph["shapes"]["mode"] == "enumerated" and graph["shapes"]["lengths"] == list(LENGTHS)
    assert graph["ops"] == sum(graph["op_counts"].values()) and graph["op_counts"]["matmul"] > 0
    if compression_op is None:
        assert graph["weight_compression"] is None
        assert not any(op.startswith("constexpr") for op in main_ops(spec))
    else:
        assert compression_op in main_ops(spec) and graph["op_counts"][compression_op] > 0
        assert graph["weight_compression"]["method"] in ("linear_quantize_weights", "palettize_weights")

    validation = manifest["validation"]
    assert validation["ran"] is True and validation["runner"]["runtime"] == RUNTIME_HERE
    assert validation["runner"]["spec"]["inputs"] == ["input_ids", "attention_mask"]
    assert validation["lengths"] == list(LENGTHS) and validation["rows"] > 0
    if precision == "fp32":
        assert validation["passed"] is True and validation["max_abs_diff"] <= 1e-4
    else:  # reduced precision: the difference and the argmax agreement are reported, not judged
        assert validation["passed"] is None and 0 < validation["max_abs_diff"] < 0.5
        assert validation["argmax_agreement"]["start"] >= 0.5


def test_compressed_weights_make_smaller_packages(exports):
    sizes = {p: exports(p)[1]["file_bytes"] for p in ("fp32", "fp16", "int8", "palette6", "palette4")}
    assert sizes["fp32"] > sizes["fp16"] > sizes["int8"] > sizes["palette6"] > sizes["palette4"]


@pytest.mark.skipif(ON_MACOS, reason="on macOS Core ML itself predicts")
def test_off_macos_the_reference_evaluator_validates_and_says_so(exports):
    runner = exports("fp16")[1]["validation"]["runner"]
    assert runner["runtime"] == "reference evaluator (numpy), not Core ML"
    assert runner["why"].startswith("coreml runs on darwin only") and runner["opset"] == "CoreML8"
    assert "enumerated" in runner["spec"]["shapes"]


@pytest.mark.skipif(not ON_MACOS, reason="MLModel.predict exists on macOS only; elsewhere nothing to compare with")
def test_on_macos_the_evaluator_matches_core_ml(exports):
    import coremltools as ct

    from pocketbert.export.coreml_mil import load_program
    from pocketbert.modeling import load_tokenizer
    from pocketbert.reference import validation_inputs

    for precision in ("fp32", "fp16"):
        out, manifest = exports(precision)
        model = ct.models.MLModel(str(out / manifest["artifact"]), compute_units=ct.ComputeUnit.CPU_ONLY)
        program = load_program(out / manifest["artifact"])
        inputs = validation_inputs(load_tokenizer(out), ["input_ids", "attention_mask"], LENGTHS[-1])
        row = {name: value[:1].astype("int32") for name, value in inputs.items()}
        core_ml, ours = model.predict(row), program(row)
        for name in ("start_logits", "end_logits"):
            assert abs(core_ml[name] - ours[name]).max() <= (1e-4 if precision == "fp32" else 5e-2)


def test_range_shapes_with_dynamic(tmp_path, tiny_bert_qa):
    manifest = export_model(str(tiny_bert_qa), "coreml", tmp_path / "range", precision="fp16", dynamic=True,
                            seq_lens=(64,), deployment_target="iOS17")
    assert manifest["validation"]["ran"] is True and manifest["validation"]["lengths"] == [16, 64, 512]
    spec = load_spec(tmp_path / "range", manifest)
    assert [f.name for f in spec.description.input] == ["input_ids", "attention_mask", "token_type_ids"]
    for feature in spec.description.input:
        ranges = [(r.lowerBound, r.upperBound) for r in feature.type.multiArrayType.shapeRange.sizeRanges]
        assert ranges == [(1, 1), (8, 512)]
    assert manifest["sequence"]["dynamic"] is True and manifest["graph"]["shapes"]["mode"] == "range"
    # A range on several inputs is allowed before iOS18, unlike enumerated lengths.
    assert manifest["graph"]["deployment_target"] == "iOS17" and spec.specificationVersion == 8


def test_deployment_target_is_respected(tmp_path, tiny_bert_qa):
    manifest = export_model(str(tiny_bert_qa), "coreml", tmp_path / "fixed", precision="fp16", seq_lens=(48,),
                            deployment_target="macOS14")
    spec = load_spec(tmp_path / "fixed", manifest)
    assert manifest["graph"]["deployment_target"] == "macOS14" and spec.specificationVersion == 8  # macOS14 = iOS17
    assert [tuple(f.type.multiArrayType.shape) for f in spec.description.input] == [(1, 48)] * 3
    assert manifest["graph"]["shapes"] == {"mode": "fixed", "lengths": [48], "neural_engine": "eligible (static shapes)"}


def test_default_target_is_raised_to_ios18_for_enumerated_lengths_on_several_inputs(exports):
    graph = exports("fp16")[1]["graph"]
    assert graph["deployment_target"] == "iOS18" and "enumerated" in graph["deployment_target_reason"]
    assert graph["specification_version"] == 9


@pytest.mark.parametrize("target, message", [
    ("iOS99", "unknown Core ML deployment target 'iOS99'; choose one of iOS16, iOS17, iOS18"),
    ("iOS17", "allows enumerated lengths on one input only"),
])
def test_bad_deployment_target_errors_and_writes_nothing(tmp_path, tiny_distilbert_qa, target, message):
    out = tmp_path / "bad"
    with pytest.raises(PocketbertError, match=message):
        export_model(str(tiny_distilbert_qa), "coreml", out, precision="fp16", seq_lens=LENGTHS,
                     deployment_target=target)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_prints_one_line_for_a_bad_target(tmp_path, tiny_distilbert_qa, capsys):
    code = cli_main(["export", str(tiny_distilbert_qa), "--format", "coreml", "--deployment-target", "Android",
                     "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown Core ML deployment target 'Android'" in err and "Traceback" not in err


def test_spec_check_catches_a_manifest_that_does_not_match(exports):
    out, manifest = exports("fp16")
    lying = {**manifest, "inputs": [{**manifest["inputs"][0], "dtype": "int64"}, manifest["inputs"][1]],
             "sequence": {**manifest["sequence"], "lengths": [32, 128]}}
    with pytest.raises(PocketbertError, match=r"input_ids is INT32, the manifest says int64.*enumerated"):
        check_spec(out / manifest["artifact"], lying)


def test_the_package_describes_itself_to_xcode(exports, tiny_distilbert_qa):
    import coremltools as ct

    out, manifest = exports("int8")
    model = ct.models.MLModel(str(out / manifest["artifact"]), skip_model_load=True)
    assert "Extractive question answering (DistilBERT, int8)" in model.short_description
    assert str(tiny_distilbert_qa) in model.author and model.version.endswith("+int8")
    assert str(tiny_distilbert_qa) in model.license
    assert "[CLS] {question} [SEP] {context} [SEP]" in model.input_description["input_ids"]
    assert "seq one of 32, 64" in model.input_description["input_ids"]
    assert "1 = real token, 0 = padding" in model.input_description["attention_mask"]
    assert "Answer-start logits over the positions" in model.output_description["start_logits"]
    assert "Answer-end logits" in model.output_description["end_logits"]
    meta = model.user_defined_metadata
    contract = manifest["tokenizer_contract"]
    assert meta["pocketbert.tokenizer.lower_case"] == "true" and meta["pocketbert.tokenizer.kind"] == "wordpiece"
    assert meta["pocketbert.tokenizer.vocab_files"] == "vocab.txt" and (out / "vocab.txt").is_file()
    assert meta["pocketbert.tokenizer.pair_order"] == contract["pair_order"] == "question first, then context"
    assert meta["pocketbert.tokenizer.max_seq_len"] == str(contract["max_seq_len"]) == "64"
    assert meta["pocketbert.source.checkpoint"] == str(tiny_distilbert_qa)


def test_a_nan_weight_fails_validation_naming_its_op(exports, tmp_path, tiny_distilbert_qa):
    import shutil

    import numpy as np

    from pocketbert.export.coreml_mil import load_program
    from pocketbert.export.task import exportable
    from pocketbert.modeling import load_qa_model

    out, manifest = exports("fp16")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    package = broken / manifest["artifact"]
    weights = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    program = load_program(out / manifest["artifact"])
    name, value = max(((n, v) for n, v in program.constants.items() if getattr(v, "ndim", 0) == 2),
                      key=lambda item: item[1].size)  # the word embeddings: unique bytes in weight.bin
    blob = bytearray(weights.read_bytes())
    at = blob.find(value.astype(np.float16).tobytes())
    assert at > 0
    blob[at:at + 2] = np.float16(np.nan).tobytes()
    weights.write_bytes(bytes(blob))

    loaded = load_qa_model(str(tiny_distilbert_qa))
    with pytest.raises(NonFiniteValue, match=rf"op '{name}' \(const, \d+ of \d+\) holds NaN \(1 of \d+ values\)"):
        get_format("coreml").validate(package, manifest, exportable(loaded.model), loaded.tokenizer)


def test_a_mask_that_overflows_fp16_fails_export_naming_the_op(tmp_path, tiny_distilbert_qa, monkeypatch):
    # transformers' old finfo(float32).min-style mask: fine in fp32 PyTorch, -inf once the program is fp16
    monkeypatch.setattr("pocketbert.export.task.MASK_VALUE", -1e5)
    out = tmp_path / "overflow"
    with pytest.raises(PocketbertError, match=r"Core ML reference evaluator: op '\w+' \((mul|cast|add)[^)]*\) "
                                              r"(overflows fp16|produces NaN)") as failed:
        export_model(str(tiny_distilbert_qa), "coreml", out, precision="fp16", seq_lens=(128,))  # padded rows
    assert "\n" not in str(failed.value) and not out.exists()


def test_eval_scores_a_core_ml_artifact_like_its_pytorch_source(exports, tmp_path):
    import json

    from pocketbert.bench.evaluate import evaluate
    from pocketbert.qa import QAWindow

    context = ("The lighthouse on the northern cape was built in 1872 by the engineer Thomas Stevenson, and its lamp "
               "could be seen from twenty miles out at sea.")
    qas = [{"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.find(answer)}]}
           for qid, question, answer in (("q1", "Who built the lighthouse?", "Thomas Stevenson"),
                                         ("q2", "When was the lighthouse built?", "1872"))]
    data = tmp_path / "dev.json"
    data.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}))
    out, _ = exports("fp32")
    entry = evaluate([str(out)], str(data), QAWindow(LENGTHS[-1], 16))["entries"][0]
    assert entry["status"] == "ok" and entry["runtime"] == RUNTIME_HERE
    assert (entry["exact_match"], entry["f1"]) == (entry["reference"]["exact_match"], entry["reference"]["f1"])
