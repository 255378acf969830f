"""Issue 26, "nothing lost, nothing silently wrong": numeric options out of range, damaged checkpoints, interrupted
training, rescoring the wrong predictions, calibration and deployment targets checked up front, bench gemm's memory,
`bench --out X gemm`, bench peers on an unusable checkpoint, and third-party chatter."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from test_distill_qa import write_tiny_squad

from pocketbert.cli import build_parser, main, quiet_third_party, resume_command
from pocketbert.errors import KeptOnInterrupt, PocketbertError
from pocketbert.options import above, at_least, between, check_options, each_at_least, qa_window_problems


@pytest.fixture(scope="module")
def squad(tmp_path_factory) -> Path:
    return write_tiny_squad(tmp_path_factory.mktemp("squad") / "train.json")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pocketbert: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _finetune(checkpoint, squad, out, *extra) -> list[str]:
    return ["finetune", "qa", str(checkpoint), "--train", str(squad), "--dev", str(squad), "--out", str(out),
            "--max-seq-len", "48", "--doc-stride", "16", "--max-query-len", "16", "--batch-size", "4", "--lr", "1e-3",
            "--logging-steps", "1", *extra]


# --- the shared range check -----------------------------------------------------------------------------------

def test_range_check_helper_names_every_option_out_of_range():
    assert at_least("--runs", None, 1) is None  # unset: its default applies
    with pytest.raises(PocketbertError) as refused:
        check_options(at_least("--batch-size", 0, 1), above("--lr", -1.0, 0), between("--warmup", 1.0, 0, 1, True),
                      above("--epochs", float("nan"), 0), each_at_least("--seq-len", [64, 4], 8),
                      at_least("--runs", 3, 1))
    message = str(refused.value)
    for part in ("--batch-size 0", "--lr -1.0", "--warmup 1.0", "--epochs nan", "--seq-len 4"):
        assert part in message
    assert "--runs" not in message and "\n" not in message


def test_qa_window_refuses_nonsense_but_fits_defaults_to_short_windows():
    assert not any(qa_window_problems(64, None, None))  # defaults (128, 64) are fitted to a 64-token window
    assert any("--doc-stride 64" in (p or "") for p in qa_window_problems(64, 64, None))
    assert any("--max-query-len 0" in (p or "") for p in qa_window_problems(384, 128, 0))
    assert any("--doc-stride -5" in (p or "") for p in qa_window_problems(384, -5, 64))
    from pocketbert.qa import QAWindow
    with pytest.raises(PocketbertError, match="--max-query-len 0"):
        QAWindow(384, 128, 0).clamped()  # the library refuses too: a 0-token question would be stripped


# --- training ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", [["--epochs", "0"], ["--epochs", "-1"], ["--batch-size", "0"], ["--batch-size", "-4"],
                                    ["--lr", "-1"], ["--lr", "nan"], ["--grad-accum", "0"], ["--save-steps", "0"],
                                    ["--warmup", "1.5"], ["--max-steps", "0"], ["--doc-stride", "-5"],
                                    ["--max-query-len", "0"], ["--doc-stride", "48"], ["--max-train-examples", "0"]])
def test_training_options_out_of_range_are_one_line_and_leave_no_folder(tiny_distilbert_qa, squad, tmp_path, capsys,
                                                                         option):
    out = tmp_path / "run"
    assert main(_finetune(tiny_distilbert_qa, squad, out, *option)) == 2
    assert option[0] in _one_line_error(capsys)
    assert not out.exists()  # refused up front: no OUT/checkpoints/ left behind


def test_a_run_of_zero_steps_is_never_written_as_finished(tiny_distilbert_qa, squad, tmp_path, monkeypatch):
    from pocketbert.distill.qa_train import FINE_TUNING, QAData, train_qa
    from pocketbert.distill.trainer import RUN_FILE, TrainConfig
    from pocketbert.qa import QAWindow

    monkeypatch.setattr(TrainConfig, "checked", lambda self: self)  # past the up-front check, as an API caller might
    with pytest.raises(PocketbertError, match="0 steps"):
        train_qa(tiny_distilbert_qa, QAData(squad, squad, QAWindow(48, 16, 16)), tmp_path / "run",
                 TrainConfig(epochs=0, batch_size=4), FINE_TUNING)
    assert not (tmp_path / "run" / RUN_FILE).exists() and not (tmp_path / "run" / "model.safetensors").exists()


@pytest.fixture(scope="module")
def interrupted_run(tiny_distilbert_qa, squad, tmp_path_factory) -> Path:
    """A QA run killed at step 5 with checkpoint-2 and checkpoint-4 on disk."""
    from transformers import TrainerCallback

    from pocketbert.distill.qa_train import FINE_TUNING, QAData, train_qa
    from pocketbert.distill.trainer import TrainConfig
    from pocketbert.qa import QAWindow

    class KillAt5(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise RuntimeError("simulated kill")

    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(RuntimeError):
        train_qa(tiny_distilbert_qa, QAData(squad, squad, QAWindow(48, 16, 16)), out,
                 TrainConfig(max_steps=6, save_steps=2, batch_size=4, lr=1e-3, logging_steps=1, callbacks=[KillAt5()]),
                 FINE_TUNING)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, named", [
    (lambda c: _truncate(c / "model.safetensors"), "model.safetensors"),
    (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json"),
    (lambda c: (c / "optimizer.pt").write_bytes(b"garbage, not a torch file"), "optimizer.pt"),
])
def test_resume_from_a_damaged_checkpoint_is_one_line_naming_the_file(tiny_distilbert_qa, squad, interrupted_run,
                                                                      tmp_path, capsys, damage, named):
    out = tmp_path / "run"
    shutil.copytree(interrupted_run, out)
    damage(out / "checkpoints" / "checkpoint-4")
    assert main(_finetune(tiny_distilbert_qa, squad, out, "--max-steps", "6", "--save-steps", "2", "--resume")) == 2
    err = _one_line_error(capsys)
    assert named in err and "checkpoint-4" in err and "checkpoint-2" in err and "--force" in err
    assert "weights_only" not in err
    assert not (out / "run.json").exists()


def test_check_resumable_accepts_an_intact_checkpoint(interrupted_run):
    from pocketbert.distill.trainer import check_resumable

    check_resumable(interrupted_run / "checkpoints" / "checkpoint-4")  # rng_state.pth and all: no error


def test_ctrl_c_during_training_says_what_was_kept_and_the_exact_resume_command(tiny_distilbert_qa, squad, tmp_path,
                                                                                capsys, monkeypatch):
    from pocketbert.distill import trainer

    original = trainer.QATrainer.training_step

    def interrupted_at_step_3(self, *args, **kwargs):
        if self.state.global_step == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    out = tmp_path / "run with space"
    argv = _finetune(tiny_distilbert_qa, squad, out, "--max-steps", "4", "--save-steps", "2", "--force")
    monkeypatch.setattr(trainer.QATrainer, "training_step", interrupted_at_step_3)
    assert main(argv) == 130
    lines = [line[line.index("pocketbert:"):] for line in capsys.readouterr().err.splitlines() if "pocketbert:" in line]
    assert len(lines) == 1, lines  # (the trainer's progress bar aside)
    err = lines[0]
    assert "nothing half-written was kept" not in err
    assert "checkpoints were kept" in err and "checkpoint-2" in err
    assert err.endswith(f"continue with: {resume_command(argv)}") and resume_command(argv).endswith("--resume")
    assert "--force" not in resume_command(argv)
    monkeypatch.setattr(trainer.QATrainer, "training_step", original)
    import shlex
    assert main(shlex.split(resume_command(argv))[1:]) == 0  # the printed command finishes the run
    assert json.loads((out / "run.json").read_text())["global_step"] == 4


def test_the_interrupt_message_before_any_checkpoint_still_says_how_to_go_on(tmp_path):
    from pocketbert.distill.trainer import TrainConfig, training_interrupted

    (tmp_path / "checkpoints").mkdir()
    interrupt = training_interrupted(tmp_path, TrainConfig(save_steps=500))
    assert isinstance(interrupt, KeptOnInterrupt) and interrupt.resume
    assert "before its first checkpoint" in interrupt.kept and "500" in interrupt.kept


# --- eval ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", [["--max-query-len", "0"], ["--doc-stride", "-5"], ["--max-seq-len", "4"],
                                    ["--doc-stride", "400"], ["--stand-in-questions", "0"]])
def test_eval_window_options_out_of_range_are_refused(tiny_distilbert_qa, squad, capsys, option):
    assert main(["eval", str(tiny_distilbert_qa), "--data", str(squad), *option]) == 2
    assert option[0] in _one_line_error(capsys)


def test_eval_defaults_still_fit_a_short_window(tiny_distilbert_qa, squad, capsys):
    # --doc-stride and --max-query-len left at their defaults (128, 64) are fitted to a 48-token window, not refused.
    assert main(["eval", str(tiny_distilbert_qa), "--data", str(squad), "--max-seq-len", "48"]) == 0
    assert "seq 48" in capsys.readouterr().out


def test_rescoring_predictions_for_other_data_is_refused_and_a_partial_match_warned(squad, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"x1": "Paris", "x2": "1871"}))
    assert main(["eval", "--predictions", str(other), "--data", str(squad)]) == 2
    err = _one_line_error(capsys)
    assert "none of the 2 ids" in err and str(other) in err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"q0a": "Quentin"}))
    assert main(["eval", "--predictions", str(partial), "--data", str(squad)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("pocketbert: warning: only 1 of the 32 questions") and "31 score 0" in captured.err


# --- bench ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["bench", "gemm", "--threads", "0"], ["bench", "op-profile", "x", "--top", "0"],
                                  ["bench", "peers", "x", "--runs", "0"], ["bench", "x", "--sweep", "4"],
                                  ["bench", "x", "--goal-mobile-speedup", "-1"],
                                  ["bench", "onnx-int8-settings", "x", "--data", "d", "--warmup", "-1"]])
def test_bench_options_out_of_range_are_one_line(tmp_path, capsys, argv):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert argv[-2] in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_bench_gemm_refuses_sizes_beyond_available_memory_before_building_anything(tmp_path, capsys):
    from pocketbert.bench.studies.gemm import check_memory, gemm_memory_bytes

    check_memory(384, 768, 3072)  # the defaults fit any machine that runs the suite
    with pytest.raises(PocketbertError, match="--inner 2000000.*GB available; pass smaller sizes"):
        check_memory(384, 2_000_000, 3072, available=16 * 2**30)
    assert gemm_memory_bytes(384, 2_000_000, 3072) > 100e9
    assert main(["bench", "gemm", "--inner", "2000000", "--out", str(tmp_path / "g")]) == 2
    assert "pass smaller sizes" in _one_line_error(capsys) and not (tmp_path / "g").exists()


def test_bench_options_before_the_comparison_name_are_the_comparisons():
    from pocketbert.bench.cli import run_gemm_cli, run_peers_cli

    args = build_parser().parse_args(["bench", "--out", "X", "gemm", "--rows", "8"])
    assert args.func is run_gemm_cli and args.out == "X" and args.rows == 8
    args = build_parser().parse_args(["bench", "--out=Y", "--threads", "2", "peers", "ckpt"])
    assert args.func is run_peers_cli and (args.out, args.threads, args.checkpoint) == ("Y", 2, "ckpt")
    args = build_parser().parse_args(["bench", "--out", "Z", "model-dir", "gemm"])  # models, named like a comparison
    assert args.models == ["model-dir", "gemm"] and args.out == "Z"


def _gpt2_checkpoint(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2ForQuestionAnswering

    GPT2ForQuestionAnswering(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("kind", ["gpt2", "truncated weights", "corrupt config"])
def test_bench_peers_on_an_unusable_checkpoint_fails_once_up_front(tiny_distilbert_qa, tmp_path, capsys, kind):
    checkpoint = tmp_path / "checkpoint"
    if kind == "gpt2":
        _gpt2_checkpoint(checkpoint)
    else:
        shutil.copytree(tiny_distilbert_qa, checkpoint)
        if kind == "truncated weights":
            _truncate(checkpoint / "model.safetensors")
        else:
            (checkpoint / "config.json").write_text("{not json")
    out = tmp_path / "peers"
    capsys.readouterr()  # (saving the GPT-2 checkpoint shows a progress bar)
    assert main(["bench", "peers", str(checkpoint), "--seq-len", "64", "--out", str(out)]) == 2
    err = _one_line_error(capsys)  # once, not once per route
    assert ("'gpt2' is not a supported encoder" if kind == "gpt2" else str(checkpoint)) in err and not out.exists()


# --- export ----------------------------------------------------------------------------------------------------------

def test_calibration_file_is_checked_and_a_small_one_warned_before_loading(tmp_path, capsys):
    from pocketbert.export import calibration

    one = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The bridge opened in 2021.", "qas": [
        {"id": "a", "question": "When did the bridge open?", "answers": [{"text": "2021", "answer_start": 21}]}]}]}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(one))
    assert calibration.check_calibration_file(path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 question(s)" in err and "instead of 128" in err
    calibration.check_calibration_file(path)
    assert capsys.readouterr().err == ""  # warned once per file
    (tmp_path / "bad.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(PocketbertError, match="not SQuAD v1.1"):
        calibration.check_calibration_file(tmp_path / "bad.json")
    with pytest.raises(PocketbertError, match="does not exist"):
        calibration.check_calibration_file(tmp_path / "missing.json")
    assert calibration.check_calibration_file(None) is None


def test_deployment_target_is_checked_for_the_export_that_reads_it():
    from pocketbert.export.deployment_targets import check_deployment_target

    check_deployment_target("onnx", None, None)
    check_deployment_target("coreml", None, "iOS17")
    check_deployment_target("executorch", "coreml", "iOS18")
    with pytest.raises(PocketbertError, match="applies to Core ML only.*--format onnx"):
        check_deployment_target("onnx", None, "iOS17")
    with pytest.raises(PocketbertError, match="--backend xnnpack"):
        check_deployment_target("executorch", "xnnpack", "iOS17")
    with pytest.raises(PocketbertError, match="unknown Core ML deployment target 'iOS99'"):
        check_deployment_target("coreml", None, "iOS99")


@pytest.mark.parametrize("extra, message", [
    (["--format", "coreml", "--deployment-target", "Android"], "unknown Core ML deployment target 'Android'"),
    (["--format", "onnx", "--deployment-target", "iOS17"], "applies to Core ML only"),
    (["--format", "onnx", "--precision", "int8-static", "--calibration", "missing.json"], "does not exist"),
    (["--format", "onnx", "--seq-len", "64", "4"], "--seq-len 4"),
])
def test_export_refuses_what_it_can_judge_before_loading_the_model(tiny_distilbert_qa, tmp_path, capsys, monkeypatch,
                                                                    extra, message):
    from pocketbert.export import api

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    import pocketbert.modeling

    monkeypatch.setattr(api, "load_qa_model", never, raising=False)
    monkeypatch.setattr(pocketbert.modeling, "load_qa_model", never)
    assert main(["export", str(tiny_distilbert_qa), *extra, "--out", str(tmp_path / "out")]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_generated_calibration_data_has_no_nested_progress_bar(tmp_path, capsys, monkeypatch):
    from pocketbert.export import calibration

    real, asked = calibration.make_qa_dataset, {}

    def small(out, **kwargs):  # the same generator on 4 articles, to keep the test short
        asked.update(kwargs)
        return real(out, **{**kwargs, "max_articles": 4})

    monkeypatch.setattr(calibration, "make_qa_dataset", small)  # the name calibration calls
    splits = calibration.generated_splits.__wrapped__()  # past the per-process cache
    assert asked["progress"] is False and splits["train"] and splits["dev"]
    assert "make-qa" not in capsys.readouterr().err


def test_library_notes_on_the_root_logger_are_quiet_but_errors_and_ours_are_not():
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter
    root = logging.getLogger()
    filters = [f for f in root.filters if type(f).__name__ == "_LibraryNotesFilter"]
    assert len(filters) == 1

    def record(level, path):
        return logging.LogRecord("root", level, path, 1, "note", None, None)

    site = "/venv/lib/python3.11/site-packages"
    assert not filters[0].filter(record(logging.WARNING, f"{site}/litert_torch/_convert/converter.py"))
    assert filters[0].filter(record(logging.ERROR, f"{site}/litert_torch/_convert/converter.py"))
    assert filters[0].filter(record(logging.WARNING, "/work/main/export/api.py"))
    import os
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL")


# --- data -----------------------------------------------------------------------------------------------------------

def test_make_qa_with_fewer_than_two_articles_is_refused_up_front(tmp_path, capsys):
    assert main(["data", "make-qa", "--max-articles", "1", "--out", str(tmp_path / "qa")]) == 2
    assert "--max-articles 1" in _one_line_error(capsys) and not (tmp_path / "qa").exists()
