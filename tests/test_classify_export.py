"""A text classifier exports to every format as QA does: the task read from the checkpoint's config, the manifest naming
the task, the labels in logit order (also labels.txt) and a single-text tokenizer contract, each artifact judged against
the unmodified *ForSequenceClassification by the rulebook (fp32 tolerance; below fp32, the same label where the original
is confident)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_LABELS, build_tiny_classifier_checkpoint

from pocketbert.cli import main
from pocketbert.errors import PocketbertError
from pocketbert.export.base import Runner, confident_answer_agreement
from pocketbert.export.task import exportable
from pocketbert.modeling import load_model, load_qa_model
from pocketbert.tasks import TEXT_CLASSIFICATION

LENGTH = 64


@pytest.fixture(scope="module")
def confident_classifier(tmp_path_factory):
    """Random weights with a scaled-up head: confident enough for the choice rule to reach a verdict."""
    return build_tiny_classifier_checkpoint(tmp_path_factory.mktemp("confident") / "ck", head_scale=5000.0)


def test_onnx_folder_of_a_classifier(tiny_distilbert_classifier, export_once, tmp_path):
    manifest = export_once(tiny_distilbert_classifier, "onnx", tmp_path / "onnx", seq_lens=(LENGTH,))
    folder = tmp_path / "onnx"
    assert manifest["task"] == "text-classification"
    assert manifest["labels"] == list(TINY_LABELS) and manifest["labels_file"] == "labels.txt"
    assert (folder / "labels.txt").read_text().split() == list(TINY_LABELS)
    assert [o["name"] for o in manifest["outputs"]] == ["logits"] and manifest["outputs"][0]["shape"] == ["batch", 5]
    assert manifest["tokenizer_contract"]["template"] == "[CLS] {text} [SEP]"
    assert manifest["tokenizer_contract"]["doc_stride"] is None
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"]["3"] == "sport" and config["architectures"] == ["DistilBertForSequenceClassification"]
    validation = manifest["validation"]
    assert validation["passed"] and validation["max_abs_diff"] < 1e-4
    assert set(validation["argmax_agreement"]) == {"logits"} and validation["choice"] == "label"
    assert manifest["source"]["task"] == "text-classification" and manifest["source"]["labels"] == list(TINY_LABELS)


@pytest.mark.parametrize("format_name", ["tflite", "executorch", "coreml"])
def test_every_format_exports_a_classifier(tiny_distilbert_classifier, export_once, tmp_path, format_name):
    manifest = export_once(tiny_distilbert_classifier, format_name, tmp_path / format_name, seq_lens=(LENGTH,))
    assert manifest["task"] == "text-classification" and manifest["outputs"][0]["shape"] == [1, 5]
    assert manifest["validation"]["ran"] and manifest["validation"]["passed"], manifest["validation"]


@pytest.mark.parametrize("format_name", ["onnx", "tflite", "executorch"])
def test_int8_classifier_is_judged_by_its_labels(confident_classifier, tmp_path, format_name):
    manifest = load_json_manifest(main_export(confident_classifier, format_name, "int8", tmp_path / format_name))
    answers = manifest["validation"]["confident_answers"]
    assert answers["confident_positions"] >= 4 and answers["passed"], answers
    assert "same label as the original model" in answers["rule"]


def test_a_classifier_that_picks_other_labels_fails_the_rule(confident_classifier):
    loaded = load_model(confident_classifier)
    module = exportable(loaded.model)

    def shuffled(feed):  # every row's logits rolled by one label: a different label wherever the model is sure
        with torch.no_grad():
            with_logits = module.model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits
        return (np.roll(with_logits.numpy(), 1, axis=-1),)

    runner = Runner(shuffled, module.input_names, batch_one=False)
    check = confident_answer_agreement(runner, module, module.input_names, loaded.tokenizer, LENGTH, "int8")
    assert check["passed"] is False and check["agreement"] == 0.0 and check["confident_positions"] >= 4


def test_int8_static_calibrates_on_a_labelled_file(tiny_distilbert_classifier, tmp_path):
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": f"Markets rallied on day {i} as shares rose.", "label": "business"})
                            + "\n" for i in range(6)))
    assert main(["export", str(tiny_distilbert_classifier), "--format", "onnx", "--precision", "int8-static",
                 "--seq-len", str(LENGTH), "--calibration", str(data), "--out", str(tmp_path / "static")]) == 0
    manifest = json.loads((tmp_path / "static" / "manifest.json").read_text())
    assert manifest["graph"]["quantization"]["calibration"]["texts"] == 6


def test_wrong_calibration_file_for_the_task_is_one_line(tiny_distilbert_classifier, tmp_path, capsys):
    squad = tmp_path / "dev.json"
    squad.write_text(json.dumps({"version": "1.1", "data": []}))
    code = main(["export", str(tiny_distilbert_classifier), "--format", "onnx", "--precision", "int8-static",
                 "--seq-len", str(LENGTH), "--calibration", str(squad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "does not suit a text-classification model" in err[-1] and not (tmp_path / "o").exists()


def test_a_qa_command_names_the_classifier(tiny_distilbert_classifier):
    with pytest.raises(PocketbertError, match="is a text-classification model"):
        load_qa_model(tiny_distilbert_classifier)


def test_a_classifier_preset_has_the_labels_asked_for():
    loaded = load_model("distilbert-base", task=TEXT_CLASSIFICATION, labels=["neg", "pos", "neutral"])
    assert type(loaded.model).__name__ == "DistilBertForSequenceClassification"
    assert loaded.model.config.num_labels == 3 and loaded.source["labels"] == ["neg", "pos", "neutral"]


def main_export(checkpoint, format_name, precision, out):
    assert main(["export", str(checkpoint), "--format", format_name, "--precision", precision,
                 "--seq-len", str(LENGTH), "--out", str(out)]) == 0
    return out


def load_json_manifest(folder):
    return json.loads((folder / "manifest.json").read_text())
