"""Every supported encoder architecture x every export format: the artifact matches the ORIGINAL transformers
model (not our wrapper), or the cell is refused up front in one line. Tiny configs, one length, 96: longer than
the tiny ModernBERT's 16-token local window, with the short validation pairs padded and the long one full.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import ARCHITECTURES, build_tiny_qa_checkpoint

from pocketbert.errors import PocketbertError
from pocketbert.export.api import export_model
from pocketbert.export.registry import format_class, get_format
from pocketbert.export.task import EXPORT_REFUSALS, check_wrapper, exportable, refusal
from pocketbert.modeling import ENCODERS, load_qa_model
from pocketbert.reference import VALIDATION_EXAMPLES

LENGTHS = (96,)
# fp32 (fp16 for Core ML, whose fp32 is the same graph) and the full-integer a16w8 (every op calibrated and quantized,
# so every architecture's own ops meet the quantizers) for every architecture; int8 where the architecture brings its
# own code paths (relative positions, sliding windows): BERT-style int8 is in the format tests.
FP32_CELLS = [("onnx", "fp32"), ("tflite", "fp32"), ("executorch", "fp32"), ("coreml", "fp16")]
A16W8_CELLS = [("onnx", "a16w8"), ("tflite", "a16w8")]
INT8_CELLS = [(f, "int8") for f in ("onnx", "tflite", "executorch", "coreml")]
INT8_ARCHITECTURES = ("deberta-v2", "modernbert")
CASES = [(a, f, p) for a in ARCHITECTURES for f, p in FP32_CELLS + A16W8_CELLS] + \
        [(a, f, p) for a in INT8_ARCHITECTURES for f, p in INT8_CELLS]
TOKENIZER_FILES = {"wordpiece": {"vocab.txt"}, "bpe": {"vocab.json", "merges.txt"}, "unigram": set()}
SENTENCEPIECE_FILES = {"xlm-roberta": "sentencepiece.bpe.model", "albert": "spiece.model", "deberta-v2": "spm.model"}


@pytest.fixture(scope="module")
def exported(tiny_checkpoints, tmp_path_factory, export_once):
    """(architecture, format, precision) -> (folder, manifest) or the refusal error; each cell exported once."""
    cache = {}

    def get(architecture, format_name, precision):
        key = (architecture, format_name, precision)
        if key not in cache:
            out = tmp_path_factory.mktemp("arch") / "-".join(key)
            try:
                cache[key] = (out, export_once(str(tiny_checkpoints(architecture)), format_name, out,
                                               precision=precision, seq_lens=LENGTHS))
            except PocketbertError as err:
                cache[key] = (out, err)
        return cache[key]

    return get


def test_encoder_table_covers_the_suite():
    assert set(ENCODERS) == set(ARCHITECTURES)
    assert set(EXPORT_REFUSALS) <= set(ENCODERS)


@pytest.mark.parametrize("architecture,format_name,precision", CASES)
def test_cell_matches_the_original_model_or_is_refused_up_front(exported, tiny_checkpoints, architecture,
                                                                 format_name, precision):
    out, result = exported(architecture, format_name, precision)
    declared = refusal(load_qa_model(tiny_checkpoints(architecture)).model.config, format_name, precision)
    if declared:
        assert isinstance(result, PocketbertError) and str(result) == declared
        assert "\n" not in declared and not out.exists()
        return
    assert not isinstance(result, PocketbertError), str(result)
    validation = result["validation"]
    assert validation["wrapper_vs_original"]["max_abs_diff"] <= 1e-5
    assert validation["reference"].startswith(f"transformers {result['source']['architecture']}")
    if not validation["ran"]:  # Core ML predicts on macOS only, unless a reference evaluator is installed
        assert format_name == "coreml" and validation["passed"] is None
        return
    assert validation["lengths"] == list(LENGTHS) and validation["runner"] is not None
    if precision == "fp32":
        assert validation["passed"] and validation["max_abs_diff"] <= 1e-4
        assert validation["argmax_agreement"] == {"start": 1.0, "end": 1.0}
    else:  # quantized: no tolerance, but the artifact must still compute the same model
        assert validation["passed"] is None and np.isfinite(validation["max_abs_diff"])
        assert validation["max_abs_diff"] < 1.0


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_manifest_states_the_tokenizer_and_mask_contract(exported, architecture):
    out, manifest = exported(architecture, "onnx", "fp32")
    contract = manifest["tokenizer_contract"]
    assert contract["pair_order"].startswith("question first")
    assert contract["max_seq_len"] == max(LENGTHS) and contract["pad_token_id"] is not None
    assert contract["template"].index("{question}") < contract["template"].index("{context}")
    assert contract["doc_stride"] > 0 and contract["max_query_len"] > 0
    assert contract["token_type_ids"]["input"] == ("token_type_ids" in [i["name"] for i in manifest["inputs"]])
    assert manifest["attention_mask"]["values"].startswith("1 = real token")
    assert manifest["accepted_lengths"]["batch"] == "dynamic"
    assert manifest["source"]["checkpoint"].startswith("/")
    files = set(manifest["tokenizer"])
    assert TOKENIZER_FILES[contract["kind"]] <= files
    if contract["kind"] != "wordpiece":
        assert "vocab.txt" not in files  # it would mislead a WordPiece reader
    if architecture in SENTENCEPIECE_FILES:
        assert contract["kind"] == "unigram" and SENTENCEPIECE_FILES[architecture] in files
    saved = json.loads((out / "tokenizer.json").read_text())
    assert saved["truncation"]["max_length"] == max(LENGTHS) and saved["truncation"]["strategy"] == "OnlySecond"
    assert saved["padding"] is None  # ONNX takes any length: nothing to pad to


def _tokenize_with_tokenizer_json(folder, manifest, length):
    """What a phone app does: tokenizer.json + the manifest, nothing of transformers or pocketbert."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    contract = manifest["tokenizer_contract"]
    tokenizer.enable_truncation(length, stride=0, strategy="only_second")
    tokenizer.enable_padding(length=length, pad_id=contract["pad_token_id"], pad_token=contract["pad_token"],
                             pad_type_id=contract["token_type_ids"]["padding"])
    example = VALIDATION_EXAMPLES[0]
    encoding = tokenizer.encode(example.question, example.context)
    return {"input_ids": [encoding.ids], "attention_mask": [encoding.attention_mask],
            "token_type_ids": [encoding.type_ids]}


def _original_logits(checkpoint, feed):
    import torch

    model = load_qa_model(checkpoint).model
    names = exportable(model).input_names
    with torch.no_grad():
        out = model(**{n: torch.tensor(feed[n]) for n in names})
    return out.start_logits.numpy(), out.end_logits.numpy()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("format_name", ["onnx", "tflite", "executorch"])
def test_plain_runtime_runs_the_folder_from_manifest_and_tokenizer_json(exported, tiny_checkpoints, architecture,
                                                                      format_name):
    out, manifest = exported(architecture, format_name, "fp32")
    if isinstance(manifest, PocketbertError):
        pytest.skip(f"refused up front: {manifest}")
    names = [i["name"] for i in manifest["inputs"]]
    dtype = np.dtype(manifest["inputs"][0]["dtype"])
    length = 96
    feed = _tokenize_with_tokenizer_json(out, manifest, length)
    arrays = {n: np.asarray(feed[n], dtype=dtype) for n in names}
    artifact = str(out / manifest["artifact"])
    if format_name == "onnx":
        import onnxruntime

        start, end = onnxruntime.InferenceSession(artifact).run([o["name"] for o in manifest["outputs"]], arrays)
    elif format_name == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        signature = next(name for name, n in manifest["accepted_lengths"]["sequence"]["signatures"].items()
                         if n == length)
        result = Interpreter(model_path=artifact).get_signature_runner(signature)(**arrays)
        start, end = (result[o["name"]] for o in manifest["outputs"])
    else:
        import torch
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(artifact).load_method("forward")
        order = manifest["accepted_lengths"]["positional_input_order"]
        start, end = (t.numpy() for t in method.execute([torch.from_numpy(arrays[n]) for n in order]))
    ref_start, ref_end = _original_logits(tiny_checkpoints(architecture), feed)
    real = np.asarray(feed["attention_mask"]) == 1
    assert np.abs(start - ref_start)[real].max() <= 1e-4 and np.abs(end - ref_end)[real].max() <= 1e-4


def test_modernbert_default_local_window_wrapper_matches(tmp_path):
    """The default 128-token window, exercised at 192 real tokens (the long validation pair fills it)."""
    checkpoint = build_tiny_qa_checkpoint(tmp_path / "modernbert-128", "modernbert", local_attention=128)
    loaded = load_qa_model(checkpoint)
    assert loaded.model.config.local_attention == 128
    module = exportable(loaded.model)
    assert check_wrapper(module, loaded.tokenizer, [192])["max_abs_diff"] <= 1e-5
    # ...and the window matters at this length: the same tokens under full attention differ.
    full = dataclasses.replace(ENCODERS["modernbert"], mask="additive")
    module.mask_kind = full.mask
    with pytest.raises(PocketbertError, match="changes ModernBertForQuestionAnswering's logits"):
        check_wrapper(module, loaded.tokenizer, [192])


def test_a_wrapper_that_changes_the_model_fails_the_export(tiny_checkpoints, tmp_path, monkeypatch):
    # DeBERTa-v2 fed an additive mask: what the exporter used to do, silently.
    monkeypatch.setitem(ENCODERS, "deberta-v2", dataclasses.replace(ENCODERS["deberta-v2"], mask="additive"))
    with pytest.raises(PocketbertError, match="changes DebertaV2ForQuestionAnswering's logits"):
        export_model(str(tiny_checkpoints("deberta-v2")), "onnx", tmp_path / "out", seq_lens=(32,))
    assert not (tmp_path / "out").exists()


def test_validation_compares_with_the_original_not_the_wrapper(tiny_checkpoints, tmp_path):
    """An artifact built from a broken wrapper matches that wrapper, and validation still fails it."""
    loaded = load_qa_model(tiny_checkpoints("deberta-v2"))
    module = exportable(loaded.model)
    module.mask_kind = "additive"
    exporter = get_format("onnx")
    artifact = tmp_path / "model.onnx"
    exporter.export(module, _options(), artifact)
    names = list(module.input_names)
    manifest = {"inputs": [{"name": n} for n in names], "outputs": [{"name": n} for n in module.output_names],
                "precision": "fp32",
                "sequence": {"dynamic": False, "lengths": [32], "min": 32, "max": 32}}
    validation = exporter.validate(artifact, manifest, module, loaded.tokenizer)
    assert validation["ran"] and validation["passed"] is False and validation["max_abs_diff"] > 1e-2


def _options():
    from pocketbert.export.base import ExportOptions

    return ExportOptions(seq_lens=(32,), max_seq_len=32)


def test_support_table_lists_every_architecture_and_format(capsys):
    from pocketbert.cli import main

    assert main(["export", "--list-support"]) == 0
    table = capsys.readouterr().out
    for encoder in ENCODERS.values():
        assert f"| {encoder.display_name} |" in table
    for name in ("executorch", "coreml", "tflite", "onnx"):
        assert name in table and format_class(name).runtime in table
