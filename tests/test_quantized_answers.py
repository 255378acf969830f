"""Quantized artifacts have no logit tolerance, so their export checks answers: where the original model is confident
on real (generated, dev-split) QA windows, the artifact must pick the same start and end positions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketbert.errors import PocketbertError
from pocketbert.export.api import export_model, validation_failure
from pocketbert.export.base import Runner, confident_answer_agreement
from pocketbert.export.task import TaskModule
from pocketbert.modeling import load_qa_model
from pocketbert.reference import torch_reference
from pocketbert.rules import MIN_CONFIDENT_POSITIONS


@pytest.fixture(scope="module")
def confident_model(tiny_distilbert_qa):
    """The tiny model with its QA head scaled up: random weights, but logits far apart, as a trained model's are."""
    loaded = load_qa_model(str(tiny_distilbert_qa))
    with torch.no_grad():
        loaded.model.qa_outputs.weight.mul_(1000)
    return TaskModule(loaded.model.eval()), loaded.tokenizer


def runner_of(module, transform):
    return Runner(lambda feed: tuple(transform(x) for x in torch_reference(module, feed)), module.input_names,
                  batch_one=False)


def test_an_artifact_answering_like_the_original_passes(confident_model):
    module, tokenizer = confident_model
    check = confident_answer_agreement(runner_of(module, lambda x: x + 0.01), module, module.input_names, tokenizer, 64)
    assert check["confident_positions"] >= MIN_CONFIDENT_POSITIONS and check["agreement"] == 1.0 and check["passed"]
    assert check["source"].startswith("generated: the dev split") and check["windows"] == 8


def test_an_artifact_answering_elsewhere_fails_in_one_line(confident_model):
    module, tokenizer = confident_model
    check = confident_answer_agreement(runner_of(module, np.negative), module, module.input_names, tokenizer, 64)
    assert check["agreement"] == 0.0 and check["passed"] is False
    manifest = {"format": "onnx", "precision": "int8-static", "source": {"architecture": "DistilBertForQuestionAnswering"},
                "validation": {"tolerance": None, "confident_answers": check}}
    line = validation_failure(manifest)
    assert "\n" not in line and "in only 0% of the" in line and "nothing was written" in line


def test_a_random_weight_model_gets_no_verdict_and_exports(tiny_distilbert_qa, tmp_path):
    manifest = export_model(str(tiny_distilbert_qa), "onnx", tmp_path / "int8", precision="int8", seq_lens=(32,))
    answers = manifest["validation"]["confident_answers"]
    assert answers["confident_positions"] < MIN_CONFIDENT_POSITIONS and answers["passed"] is None
    assert manifest["validation"]["passed"] is None


def test_failed_check_leaves_nothing_behind(tiny_distilbert_qa, tmp_path, monkeypatch):
    import pocketbert.export.base as base

    monkeypatch.setattr(base, "confident_answer_agreement", lambda *args: {
        "agreement": 0.0, "confident_positions": 9, "min_agreement": 0.5, "passed": False})
    with pytest.raises(PocketbertError, match="picks the original .* answer position in only 0%"):
        export_model(str(tiny_distilbert_qa), "onnx", tmp_path / "broken", precision="int8", seq_lens=(32,))
    assert not (tmp_path / "broken").exists() and list(tmp_path.iterdir()) == []
