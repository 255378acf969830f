"""The export spine (api, manifest, atomic output, bad input) exercised through the ONNX format."""
from __future__ import annotations

import json
import sys

import pytest

from pocketbert.cli import main
from pocketbert.errors import PocketbertError
from pocketbert.export.api import export_model
from pocketbert.export.registry import format_names, get_format
from pocketbert.manifest import MANIFEST_SCHEMA, artifact_digest, read_manifest


@pytest.fixture(scope="module")
def onnx_fp32(tiny_distilbert_qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    export_model(str(tiny_distilbert_qa), "onnx", out, seq_lens=(32, 64))
    return out


def test_onnx_fp32_artifact_folder_is_complete_and_validated(onnx_fp32, tiny_distilbert_qa):
    manifest = read_manifest(onnx_fp32)
    assert manifest["schema"] == MANIFEST_SCHEMA
    assert manifest["format"] == "onnx" and manifest["precision"] == "fp32"
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["inputs"][0]["shape"] == ["batch", "seq"]
    assert [o["name"] for o in manifest["outputs"]] == ["start_logits", "end_logits"]
    assert manifest["source"]["checkpoint"] == str(tiny_distilbert_qa)
    assert manifest["source"]["random_weights"] is False
    assert (manifest["file_bytes"], manifest["sha256"]) == artifact_digest(onnx_fp32 / manifest["artifact"])
    validation = manifest["validation"]
    assert validation["ran"] and validation["passed"]
    assert validation["max_abs_diff"] <= 1e-4
    assert {"tokenizer.json", "vocab.txt"} <= set(manifest["tokenizer"])
    assert (onnx_fp32 / "tokenizer.json").is_file()
    assert manifest["versions"]["torch"] == "2.13.0+cpu" or manifest["versions"]["torch"].startswith("2.13.0")


def test_runner_accepts_batches(onnx_fp32):
    import numpy as np

    manifest = read_manifest(onnx_fp32)
    runner = get_format("onnx").load(onnx_fp32 / manifest["artifact"], manifest, threads=1)
    ids = np.full((3, 40), 1012, dtype=np.int64)
    start, end = runner({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert start.shape == end.shape == (3, 40)


def test_onnx_session_settings_are_recorded_for_apps_and_used_by_the_runner(onnx_fp32):
    manifest = read_manifest(onnx_fp32)
    settings = manifest["runtime_settings"]
    # The graph itself is fast under ONNX Runtime's defaults (tests/test_export_onnx_graph.py): no subnormal flush and
    # no disabled fusion needed, only spinning off.
    assert settings["disabled_optimizers"] == []
    assert settings["config_entries"] == {"session.intra_op.allow_spinning": "0"}
    assert set(settings["why"]) == set(settings["config_entries"])
    runner = get_format("onnx").load(onnx_fp32 / manifest["artifact"], manifest, threads=1)
    assert runner.info["config_entries"] == settings["config_entries"]
    assert runner.info["disabled_optimizers"] == settings["disabled_optimizers"] and runner.info["threads"] == 1


def test_runners_apply_the_settings_the_manifest_records(onnx_fp32, tmp_path):
    """The manifest is the contract: a runner applies what it says, not what the exporter would write today."""
    import shutil

    from pocketbert.manifest import write_manifest

    copy = tmp_path / "copy"
    shutil.copytree(onnx_fp32, copy)
    manifest = read_manifest(copy)
    manifest["runtime_settings"] = {"config_entries": {"session.intra_op.allow_spinning": "1"}, "disabled_optimizers": []}
    write_manifest(copy, manifest)
    runner = get_format("onnx").load(copy / manifest["artifact"], read_manifest(copy), threads=1)
    assert runner.info["config_entries"] == {"session.intra_op.allow_spinning": "1"}
    assert runner.info["disabled_optimizers"] == []


def test_onnx_int8_reports_agreement(tiny_bert_qa, tmp_path):
    manifest = export_model(str(tiny_bert_qa), "onnx", tmp_path / "int8", precision="int8", seq_lens=(64,))
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    validation = manifest["validation"]
    assert validation["ran"] and validation["passed"] is None and validation["tolerance"] is None
    assert 0.0 <= validation["argmax_agreement"]["start"] <= 1.0
    assert validation["max_abs_diff"] < 1.0


def test_every_format_is_registered():
    assert {"onnx"} <= set(format_names())


def test_existing_output_needs_force(onnx_fp32, tiny_distilbert_qa):
    with pytest.raises(PocketbertError, match="--force"):
        export_model(str(tiny_distilbert_qa), "onnx", onnx_fp32, seq_lens=(32,))


def test_failed_export_leaves_nothing(tiny_distilbert_qa, tmp_path, monkeypatch):
    exporter_cls = type(get_format("onnx"))

    def broken_export(self, module, options, path):
        path.write_bytes(b"half an artifact")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(exporter_cls, "export", broken_export)
    with pytest.raises(RuntimeError):
        export_model(str(tiny_distilbert_qa), "onnx", tmp_path / "out", seq_lens=(32,))
    assert list(tmp_path.iterdir()) == []


def _error_line(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("pocketbert: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0]  # one line, after any progress bar
    return errors[0]


def test_missing_checkpoint(tmp_path, capsys):
    line = _error_line(["export", str(tmp_path / "nope"), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "does not exist" in line


def test_corrupt_checkpoint(tiny_distilbert_qa, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_distilbert_qa, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    line = _error_line(["export", str(broken), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "could not be loaded" in line
    (broken / "config.json").write_text("{not json")
    line = _error_line(["export", str(broken), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "config.json" in line and "is corrupt" in line and "pass a local checkpoint directory" not in line


def test_checkpoint_without_qa_head(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)) \
        .save_pretrained(str(tmp_path / "encoder"))
    line = _error_line(["export", str(tmp_path / "encoder"), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "no QA head" in line and "finetune qa" in line


def test_unsupported_architecture(tmp_path, capsys):
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    line = _error_line(["export", str(folder), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "'vit' is not a supported encoder architecture" in line


def test_decoder_with_a_qa_head_is_not_a_supported_encoder(tmp_path, capsys):
    from transformers import GPT2Config, GPT2ForQuestionAnswering

    GPT2ForQuestionAnswering(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)) \
        .save_pretrained(str(tmp_path / "gpt2"))
    line = _error_line(["export", str(tmp_path / "gpt2"), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "'gpt2' is not a supported encoder architecture" in line


def test_bert_family_encoder_without_qa_head(tmp_path, capsys):
    from transformers import DebertaV2Config, DebertaV2Model

    DebertaV2Model(DebertaV2Config(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                   vocab_size=100)).save_pretrained(str(tmp_path / "deberta"))
    line = _error_line(["export", str(tmp_path / "deberta"), "--format", "onnx", "--out", str(tmp_path / "o")],
                       capsys)
    assert "no QA head" in line


def test_loading_a_checkpoint_with_a_pooler_says_one_line(tiny_distilbert_qa, tmp_path, capfd):
    """transformers' multi-line load report is replaced by one line of ours."""
    from transformers import BertConfig, BertForQuestionAnswering, BertModel

    from pocketbert.modeling import load_qa_model

    config = BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    encoder = BertModel(config)  # has a pooler, which the QA model does not use
    qa = BertForQuestionAnswering(config)
    state = {**{f"bert.{k}": v for k, v in encoder.state_dict().items()}, **{
        k: v for k, v in qa.state_dict().items() if k.startswith("qa_outputs")}}
    qa.load_state_dict(state, strict=False)
    from safetensors.torch import save_file

    folder = tmp_path / "with-pooler"
    qa.save_pretrained(str(folder))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_distilbert_qa / name).read_bytes())
    capfd.readouterr()
    load_qa_model(folder)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pooler" in err[0] and err[0].startswith("pocketbert: note:")


def test_format_precision_pair_that_does_not_exist(tiny_distilbert_qa, tmp_path, capsys):
    line = _error_line(["export", str(tiny_distilbert_qa), "--format", "onnx", "--precision", "fp16",
                        "--out", str(tmp_path / "o")], capsys)
    assert "no precision 'fp16'" in line


def test_sequence_longer_than_positions(tiny_distilbert_qa, tmp_path, capsys):
    line = _error_line(["export", str(tiny_distilbert_qa), "--format", "onnx", "--seq-len", "600",
                        "--out", str(tmp_path / "o")], capsys)
    assert "position embeddings allow (512)" in line
    assert not (tmp_path / "o").exists()


def test_missing_runtime_package(tiny_distilbert_qa, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError
    line = _error_line(["export", str(tiny_distilbert_qa), "--format", "onnx", "--out", str(tmp_path / "o")], capsys)
    assert "pip install onnxscript" in line
    assert not (tmp_path / "o").exists()


def test_cli_export_prints_summary(tiny_distilbert_qa, tmp_path, capsys):
    assert main(["export", str(tiny_distilbert_qa), "--format", "onnx", "--seq-len", "32",
                 "--out", str(tmp_path / "cli")]) == 0
    assert "validated on lengths [32]" in capsys.readouterr().out
