"""A text classifier is timed and judged wherever a QA model is: `pocketbert bench` times classifier artifacts and
checkpoints against BERT-base with the same head (a *ForSequenceClassification with the classifier's labels), on the
task's own inputs, and every row records the task; `device run` bundles carry the task's output names, judge inputs
and reference, and the host, the browser and the device runner read them from bundle.json, so the rulebook judges a
classifier's logits (no mask, the label as the choice) as export validation does."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_LABELS

from pocketbert import rules
from pocketbert.cli import main
from pocketbert.errors import PocketbertError
from pocketbert.results import baseline_ratios, load_results, reference_ratios

SEQ = 64
CLASSIFICATION = "text-classification"


@pytest.fixture(scope="module")
def classifier_artifacts(tiny_distilbert_classifier, export_once, tmp_path_factory):
    """onnx/fp32, onnx/int8 and tflite/fp32 artifacts of the tiny classifier at seq 64."""
    root = tmp_path_factory.mktemp("classifier-artifacts")
    folders = {}
    for fmt, precision in (("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32")):
        options = {"seq_lens": (SEQ,)} | ({"precision": precision} if precision != "fp32" else {})
        export_once(tiny_distilbert_classifier, fmt, root / f"{fmt}-{precision}", **options)
        folders[f"{fmt}/{precision}"] = root / f"{fmt}-{precision}"
    return folders


def output_checks(out) -> dict:
    """Every verdict `device run` stored in OUT/results.json, by artifact folder."""
    results = load_results(out)
    checks = [m["settings"]["output_checks"] for m in results.get("merged", [])] + [results["settings"]["output_checks"]]
    return {key.split(":", 1)[1]: check for c in checks for key, check in c.items()}


# --- bench ---------------------------------------------------------------------------------------------------------

def test_bench_times_a_classifier_against_bert_base_with_the_same_head(classifier_artifacts, tiny_distilbert_classifier,
                                                                       tmp_path, capsys):
    out = tmp_path / "bench"
    models = [str(classifier_artifacts["onnx/fp32"]), str(classifier_artifacts["onnx/int8"]),
              str(tiny_distilbert_classifier)]
    assert main(["bench", *models, "--seq-len", str(SEQ), "--warmup", "1", "--runs", "3", "--threads", "1",
                 "--no-export-baseline", "--out", str(out)]) == 0
    results = load_results(out)
    records = results["records"]
    assert results["settings"]["task"] == CLASSIFICATION and "e2e_text" in results["settings"]
    for record in records:
        assert record["status"] == "ok", (record["model"], record["reason"])
        assert record["task"] == CLASSIFICATION
    assert {(r["mode"], r["role"]) for r in records} == {(m, role) for m in ("model", "e2e")
                                                         for role in ("candidate", "baseline")}
    # The baseline is BERT-base (random weights) as a *ForSequenceClassification with the classifier's labels.
    baseline, = {r["artifact"] for r in records if r["role"] == "baseline"}
    config = json.loads((out / "baseline-cache" / "bert-base-text-classification-5-labels" / "config.json").read_text())
    assert baseline.endswith("bert-base-text-classification-5-labels")
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert [config["id2label"][str(i)] for i in range(len(TINY_LABELS))] == list(TINY_LABELS)
    assert config["num_hidden_layers"] == 12 and config["hidden_size"] == 768
    # Each candidate is compared with it: the eager checkpoint in PyTorch, the artifacts against its fp32 eager row.
    assert {(c["runtime"], c["mode"]) for c in baseline_ratios(records)} == {("pytorch-eager", "model"),
                                                                          ("pytorch-eager", "e2e")}
    assert {(c["runtime"], c["precision"]) for c in reference_ratios(records)} >= {("onnxruntime", "fp32"),
                                                                                   ("onnxruntime", "int8")}
    assert "Task: text-classification" in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "vs bert-base (random weights) pytorch" in printed


def test_the_exported_baseline_has_the_candidates_head(classifier_artifacts, tiny_distilbert_classifier,
                                                      tiny_distilbert_qa, tmp_path, monkeypatch):
    from pocketbert.bench import measure
    from pocketbert.bench.runtimes import open_target

    candidate = open_target(classifier_artifacts["onnx/int8"])
    # A checkpoint baseline is exported like the candidate, with its own (classifier) head.
    eager, exported = measure.baseline_targets(str(tiny_distilbert_classifier), [candidate], tmp_path / "cache", True,
                                               [SEQ])
    assert eager.task_name == exported.task_name == CLASSIFICATION and exported.labels == list(TINY_LABELS)
    assert exported.manifest["task"] == CLASSIFICATION and exported.precision == "int8"
    assert exported.manifest["validation"]["choice"] == "label"
    # The preset is exported from the classifier checkpoint it is timed as (not the preset's QA head): what
    # _exported_baseline is handed is that checkpoint, and its cache folder names the head.
    handed = []
    monkeypatch.setattr(measure, "_exported_baseline",
                        lambda source, like, folder, lengths: handed.append((source, folder)) or exported.path)
    measure.baseline_targets("bert-base", [candidate], tmp_path / "cache", True, [SEQ])
    (source, folder), = handed
    assert source.endswith("bert-base-text-classification-5-labels") and folder.name.startswith(
        "text-classification-5-labels-onnx-int8")
    assert json.loads((tmp_path / "cache" / "bert-base-text-classification-5-labels" / "config.json").read_text())[
        "architectures"] == ["BertForSequenceClassification"]
    # A baseline of another head is refused in one line.
    with pytest.raises(PocketbertError, match="is a question-answering model but the candidates are "
                                              "text-classification with 5 labels") as refused:
        measure.baseline_targets(str(tiny_distilbert_qa), [candidate], tmp_path / "cache", False, [SEQ])
    assert "\n" not in str(refused.value)


def test_bench_refuses_mixed_tasks_in_one_line(classifier_artifacts, tiny_distilbert_qa, export_once, tmp_path,
                                               capsys):
    qa = tmp_path / "qa onnx"
    export_once(tiny_distilbert_qa, "onnx", qa, seq_lens=(SEQ,))
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["bench", str(qa), str(classifier_artifacts["onnx/fp32"]), "--no-baseline", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "one task" in err and "question-answering" in err and CLASSIFICATION in err and "\n" not in err
    assert "Traceback" not in err and not out.exists()


# --- device run: bundles, the host, the browser ----------------------------------------------------------------------

def test_a_classifier_bundle_names_the_task_outputs_and_judge(classifier_artifacts, tmp_path):
    from pocketbert.mobile_harness.bundle import judge_logits, make_bundle, outcome

    bundle = make_bundle(classifier_artifacts["onnx/fp32"], "candidate", tmp_path / "staging", 0, 1, 2, 1, None)
    config = json.loads((bundle.folder / "bundle.json").read_text())
    assert config["task"] == CLASSIFICATION and config["outputs"] == ["logits"]
    assert config["masked"] is False and config["choice"] == "label" and config["rule"] == rules.rule_for("fp32", "label")
    assert config["device_outputs"] == ["device_logits.npy"] and config["judge"]["outputs"] == ["judge_logits.npy"]
    reference = np.load(bundle.folder / config["judge"]["reference"][0])
    assert reference.shape == (config["judge"]["rows"], len(TINY_LABELS))
    assert set(config["inputs"]) == {"input_ids", "attention_mask"}
    # The source model's own logits pass; other outputs than the artifact's fail the row, saying why.
    check = judge_logits(bundle, [reference])
    assert check["passed"] is True and set(check["argmax_agreement"]) == {"logits"}
    wrong = judge_logits(bundle, [reference, reference])
    assert wrong["passed"] is False and outcome(wrong)["status"] == "failed"
    assert "the device returned other outputs" in outcome(wrong)["reason"]


def test_host_target_runs_and_judges_classifiers(classifier_artifacts, tmp_path):
    from pocketbert.mobile_harness.linux import HostTarget
    from pocketbert.mobile_harness.run import run_on_device

    out = tmp_path / "device"
    folders = [classifier_artifacts["onnx/fp32"], classifier_artifacts["tflite/fp32"], classifier_artifacts["onnx/int8"]]
    records = run_on_device(HostTarget(), folders, out, warmup=1, runs=2, threads=1)
    assert len(records) == 3
    for record in records:
        assert record["status"] == "ok", (record["format"], record["reason"])
        assert record["task"] == CLASSIFICATION and record["seq_len"] == SEQ
        assert record["latency_ms"]["n"] == 2 and record["load_ms"] > 0 and record["peak_rss_bytes"] > 0
        device = record["device"]
        assert device["target"] == "host" and device["runtime_version"] and device["cores"]
    checks = output_checks(out)
    for label in ("onnx/fp32", "tflite/fp32"):
        check = checks[str(classifier_artifacts[label])]
        assert check["passed"] is True and check["max_abs_diff"] <= 1e-4, (label, check)
        assert check["choice"] == "label" and set(check["argmax_agreement"]) == {"logits"}
        assert check["judged_on"] == "judge"
    # int8 of a random-weight classifier: the label rule decides, and may give no verdict; never a failure.
    int8 = checks[str(classifier_artifacts["onnx/int8"])]
    assert int8["passed"] is not False and "same label as the original model" in int8["rule"]


def test_browser_target_runs_classifiers(classifier_artifacts, tmp_path):
    from test_device_browser import require_browser_stack

    require_browser_stack()
    from pocketbert.mobile_harness.run import run_on_device
    from pocketbert.mobile_harness.targets import parse_target

    out = tmp_path / "browser"
    folders = [classifier_artifacts["onnx/fp32"], classifier_artifacts["tflite/fp32"]]
    records = run_on_device(parse_target("browser:chromium"), folders, out, warmup=1, runs=2, threads=1)
    for record in records:
        assert record["status"] == "ok", (record["format"], record["reason"])
        assert record["task"] == CLASSIFICATION
        assert record["runtime"] == {"onnx": "onnxruntime-web", "tflite": "litert.js"}[record["format"]]
        assert record["device"]["target"] == "browser:chromium" and record["latency_ms"]["n"] == 2
    checks = output_checks(out)
    for folder in folders:
        check = checks[str(folder)]
        assert check["passed"] is True and check["max_abs_diff"] <= 1e-4 and check["judged_on"] == "judge", check
        assert set(check["argmax_agreement"]) == {"logits"}


def test_the_qa_web_page_refuses_a_classifier_in_one_line(classifier_artifacts):
    from pocketbert.mobile_harness.browser import serve_qa_page

    with pytest.raises(PocketbertError, match="text-classification artifact; the web page answers questions"):
        serve_qa_page(classifier_artifacts["onnx/fp32"])
