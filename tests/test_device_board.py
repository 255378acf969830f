"""The device harness on real arm64 runtimes: the emulated board (`make board`, target board:arm64).

The end-to-end tests need the board up (`make board`: root, Debian's qemu-user-static, debootstrap and
binfmt-support; CI runs it before `make test`); without it they skip, saying so. They run tiny ONNX and LiteRT
artifacts (fp32, int8) with ONNX Runtime's and LiteRT's aarch64 wheels under qemu and expect the answers
this host's runtimes give. The rest runs anywhere.
"""
from __future__ import annotations

import json
import os

import pytest

from pocketbert.errors import PocketbertError
from pocketbert.manifest import read_manifest
from pocketbert.mobile_harness import board as board_module
from pocketbert.mobile_harness.board import CORES, Board, BoardTarget, board_down, board_status, board_up
from pocketbert.mobile_harness.run import run_on_device
from pocketbert.results import baseline_ratios, load_results, make_record
from pocketbert.sessions import applied

SEQ = 64
CONTEXTS = [
    "The lighthouse on the northern cape was built in 1872 by the engineer Thomas Stevenson, and its lamp "
    "could be seen from twenty miles out at sea.",
    "Mount Kenya is the second highest mountain in Africa; its summit, Batian, rises to 5,199 metres above sea level.",
]
QUESTIONS = [("q1", 0, "Who built the lighthouse?", "Thomas Stevenson"), ("q2", 0, "When was it built?", "1872"),
             ("q3", 1, "How high is Batian?", "5,199 metres")]
NOT_UP = "the emulated arm64 board is not up: run `make board` (needs root and qemu-user-static, debootstrap, binfmt-support)"


@pytest.fixture(scope="module")
def board_target():
    if not board_status()["up"]:
        pytest.skip(NOT_UP)
    return BoardTarget("board:arm64")


@pytest.fixture(scope="module")
def arm_artifacts(board_target, tiny_distilbert_qa, tmp_path_factory, export_once):
    root = tmp_path_factory.mktemp("board-artifacts")
    folders = []
    for fmt in ("onnx", "tflite"):
        for precision in ("fp32", "int8"):
            folder = root / f"{fmt}-{precision}"
            export_once(str(tiny_distilbert_qa), fmt, folder, precision=precision, seq_lens=(SEQ,))
            folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory) -> str:
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": question,
                                      "answers": [{"text": answer, "answer_start": context.find(answer)}]}
                                     for qid, index, question, answer in QUESTIONS if index == c]}
        for c, context in enumerate(CONTEXTS)]}]}
    path = tmp_path_factory.mktemp("board-squad") / "dev.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_board_runs_onnx_and_litert_like_the_host(board_target, arm_artifacts, squad_file, tmp_path):
    out = tmp_path / "results"
    records = run_on_device(board_target, arm_artifacts, out, warmup=1, runs=2, eval_data=squad_file)
    assert [(r["format"], r["precision"]) for r in records] == [
        ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")]
    for record in records:
        assert record["status"] == "ok", record["reason"]
        device = record["device"]
        assert device["target"] == "board:arm64" and device["abi"] == "aarch64"
        assert device["emulated"] == {"emulator": "qemu-user", "cpu": "cortex-a76"}
        assert "asimddp" in device["cpu_features"] and "cortex-a76" in device["model"] and device["soc"] == "Cortex-A76"
        assert record["runtime"] in ("onnxruntime", "litert")
    results = load_results(out)
    checks = list(results["merged"][-1]["settings"]["output_checks"].values())  # the last merge saw all four
    # Judged by the rulebook against the source model, as at export: fp32 within its tolerance; the random tiny
    # weights are never confident, so int8 gets no verdict (and no failure).
    assert len(checks) == 4 and all(c["expected_from"].endswith("on the host") for c in checks)
    assert all(c["passed"] is (True if c["precision"] == "fp32" else None) for c in checks)
    assert all(c["max_abs_diff"] <= 1e-4 for c in checks if c["tolerance"] is not None)
    # The board ran each ONNX file with the session settings its manifest records, as `pocketbert bench` does.
    for record, folder in zip(records, arm_artifacts):
        assert record["runtime_settings"] == applied(read_manifest(folder)["runtime_settings"], None)
    # Emulated timings are no latencies: no ratio, no plot.
    assert baseline_ratios(records) == [] and not list(out.glob("device_latency_*.png"))
    # EM/F1 through each artifact on the board, beside the same artifact on this host.
    entries = results["eval"]
    assert len(entries) == 4 and all(e["status"] == "ok" and e["count"] == len(QUESTIONS) for e in entries)
    for entry in entries:
        versus_host = entry["logits_vs_host"]
        assert versus_host["rows"] >= len(QUESTIONS) and set(versus_host["argmax_agreement"].values()) == {1.0}
        if entry["precision"] == "fp32":
            assert versus_host["passed"]
            assert (entry["exact_match"], entry["f1"]) == (entry["host"]["exact_match"], pytest.approx(entry["host"]["f1"]))
        else:
            # Random tiny weights give near-tied spans: int8 rounding on arm64 may pick another n-best span, so
            # F1 is compared on trained models only; the logits must still be close.
            assert versus_host["max_abs_diff"] <= 0.1


def test_board_up_is_idempotent_and_down_leaves_nothing(board_target):
    board = Board()
    before = board.state()
    assert board_up(cpu=before.cpu)["port"] == before.port, "a second `up` keeps the running board"
    board_down(board)
    assert board_module.board_processes(board) == [] and board_module.mounts_under(board.rootfs) == []
    assert not board_status()["up"]
    status = board_up(cpu=before.cpu)  # and it comes back, as after a reboot
    assert status["up"] and BoardTarget("board:arm64").info()["abi"] == "aarch64"


def test_emulated_rows_stay_out_of_ratios_and_the_report():
    from pocketbert.bench.report import render_report

    def row(role, model, emulated):
        device = {"target": "board:arm64", "model": "emulated arm64 board", "cpu_features": ["fp", "asimddp"],
                  **({"emulated": {"emulator": "qemu-user", "cpu": "cortex-a76"}} if emulated else {})}
        return make_record(model=model, role=role, format="onnx", runtime="onnxruntime", seq_len=SEQ, device=device,
                           latency_ms={k: 5.0 for k in ("mean", "p50", "p90", "p99", "trimmed_mean", "min", "max")}
                           | {"n": 2, "warmup": 1})

    emulated = [row("candidate", "student", True), row("baseline", "bert-base", True)]
    assert baseline_ratios(emulated) == []
    assert len(baseline_ratios([row("candidate", "student", False), row("baseline", "bert-base", False)])) == 1
    report = render_report({"records": emulated, "settings": {}, "machine": {}})
    assert "Emulated devices: output checks only" in report and "cortex-a76" in report
    latency = report.split("## Latency", 1)[1].split("##", 1)[0]
    assert "student" not in latency


def test_board_without_root_or_packages_is_one_line(monkeypatch, capsys):
    from pocketbert.cli import main

    monkeypatch.setattr(board_module.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(board_module.shutil, "which", lambda tool: None)
    assert main(["device", "board", "up"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "needs root" in error
    assert "qemu-user-static" in error and "debootstrap" in error and "binfmt-support" in error


def test_board_target_when_down_or_wrong_is_one_line(tmp_path):
    board = Board(home=tmp_path / "board")
    with pytest.raises(PocketbertError, match=r"board:arm64 is not up; start it with `pocketbert device board up`"):
        BoardTarget("board:arm64", board=board)
    with pytest.raises(PocketbertError, match="board:arm64"):
        BoardTarget("board:riscv64", board=board)
    assert board_down(board)["up"] is False  # nothing started, nothing to stop


def test_emulated_cores_show_a_real_cpuinfo():
    a76 = CORES["cortex-a76"].cpuinfo(2)
    assert a76.count("processor\t:") == 2 and "CPU part\t: 0xd0b" in a76 and " asimddp" in a76
    assert "asimddp" not in CORES["cortex-a72"].features and "sve" not in a76


def test_device_facts_read_arm_features(monkeypatch):
    from pocketbert.mobile_harness import device_runner

    cpuinfo = CORES["neoverse-n1"].cpuinfo(1)
    monkeypatch.setattr(device_runner, "read_text", lambda path: cpuinfo if path == "/proc/cpuinfo" else None)
    facts = device_runner.device_facts()
    assert facts["soc"] == "Neoverse-N1" and "asimddp" in facts["cpu_features"] and "ssbs" in facts["cpu_features"]
    assert facts["cores"] == os.cpu_count()
