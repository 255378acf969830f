"""Issue 26 for `pocketbert device run`: what a row says (the reason of a failed row, the core the process ran on,
from its own AT_HWCAP/AT_HWCAP2), no discarded timings on an emulated board with --eval, no temp folder left by a
failed host run, and a --help without "(default: None)". None of it needs the emulated board."""
from __future__ import annotations

import struct
import tempfile
from argparse import Namespace

import pytest

from pocketbert.cli import main
from pocketbert.mobile_harness import device_runner
from pocketbert.mobile_harness.board import CORES, BoardState, BoardTarget, core_that_ran

HWCAP_ASIMD, HWCAP_ASIMDHP, HWCAP_ASIMDDP, HWCAP_SVE = 1 << 1, 1 << 10, 1 << 20, 1 << 22
HWCAP2_SVE2, HWCAP2_I8MM, HWCAP2_BF16, HWCAP2_SME = 1 << 1, 1 << 13, 1 << 14, 1 << 23


def auxv_bytes(pairs: dict[int, int]) -> bytes:
    """An auxv as the kernel lays it out: native unsigned long pairs, AT_NULL last."""
    return b"".join(struct.pack("@LL", key, value) for key, value in [*pairs.items(), (0, 0)])


def test_auxv_parse_and_hwcap_bits_name_the_arm_features():
    entries = device_runner.parse_auxv(auxv_bytes({6: 4096, 16: HWCAP_ASIMD | HWCAP_ASIMDDP, 26: HWCAP2_I8MM}) + b"junk")
    assert entries == {6: 4096, 16: HWCAP_ASIMD | HWCAP_ASIMDDP, 26: HWCAP2_I8MM}  # stops at AT_NULL
    assert device_runner.hwcap_names(HWCAP_ASIMD | HWCAP_ASIMDDP | HWCAP_SVE, HWCAP2_SVE2 | HWCAP2_I8MM | HWCAP2_BF16
                                     | HWCAP2_SME) == ["asimd", "asimddp", "sve", "sve2", "i8mm", "bf16", "sme"]
    # The kernel's own names and bit order (arch/arm64/include/uapi/asm/hwcap.h).
    assert device_runner.AARCH64_HWCAP[20] == "asimddp" and device_runner.AARCH64_HWCAP[28] == "ssbs"
    assert device_runner.AARCH64_HWCAP2[13] == "i8mm" and device_runner.AARCH64_HWCAP2[23] == "sme"
    assert device_runner.AARCH64_HWCAP2[37] == "sme2"


def test_running_hwcaps_read_the_process_auxv_on_aarch64_only(tmp_path, monkeypatch):
    auxv = tmp_path / "auxv"
    auxv.write_bytes(auxv_bytes({16: HWCAP_ASIMD | HWCAP_ASIMDHP | HWCAP_ASIMDDP}))
    monkeypatch.setattr(device_runner.platform, "machine", lambda: "x86_64")
    assert device_runner.running_hwcaps(str(auxv)) is None  # x86 bits mean other things
    monkeypatch.setattr(device_runner.platform, "machine", lambda: "aarch64")
    assert device_runner.running_hwcaps(str(auxv)) == ["asimd", "asimdhp", "asimddp"]
    assert device_runner.running_hwcaps(str(tmp_path / "missing")) is None


def test_device_facts_report_what_the_process_ran_with_beside_cpuinfo(monkeypatch):
    cpuinfo = CORES["cortex-a76"].cpuinfo(1)  # what the board bind-mounts: the configured core
    monkeypatch.setattr(device_runner, "read_text", lambda path: cpuinfo if path == "/proc/cpuinfo" else None)
    monkeypatch.setattr(device_runner, "running_hwcaps", lambda: ["fp", "asimd", "cpuid"])  # an A72-like process
    facts = device_runner.device_facts()
    assert facts["cpu_features"] == ["fp", "asimd", "cpuid"] and facts["cpu_features_source"] == "auxv"
    assert "asimddp" in facts["cpuinfo_features"]
    monkeypatch.setattr(device_runner, "running_hwcaps", lambda: None)  # not readable: cpuinfo, and it says so
    facts = device_runner.device_facts()
    assert "asimddp" in facts["cpu_features"] and facts["cpu_features_source"] == "/proc/cpuinfo"
    assert "cpuinfo_features" not in facts


def _board(cpu: str) -> BoardTarget:
    target = BoardTarget.__new__(BoardTarget)  # no board needed: only the naming is under test
    target.state = BoardState(cpu=cpu, port=2222)
    return target


def test_a_board_row_names_the_core_the_process_ran_on():
    a76 = {"cpu_features": CORES["cortex-a76"].features.split(), "cpu_features_source": "auxv"}
    a72 = {"cpu_features": CORES["cortex-a72"].features.split(), "cpu_features_source": "auxv"}
    qemu_max = {"cpu_features": ["fp", "asimd", "asimddp", "sve", "i8mm", "bf16"], "cpu_features_source": "auxv"}
    assert core_that_ran("cortex-a76", a76) == {"cpu": "cortex-a76", "confirmed": True}
    assert core_that_ran("cortex-a76", {"cpu_features": ["fp"], "cpu_features_source": "/proc/cpuinfo"})["cpu"] == \
        "cortex-a76"  # nothing better to go by
    facts = _board("cortex-a76").emulation_facts(a76)  # as the board tests expect it, unchanged
    assert facts == {"model": "emulated arm64 board (cortex-a76, qemu-user)",
                     "emulated": {"emulator": "qemu-user", "cpu": "cortex-a76"}}
    facts = _board("cortex-a76").emulation_facts(a72)
    assert facts["emulated"]["cpu"] == "cortex-a72" and facts["emulated"]["configured_cpu"] == "cortex-a76"
    assert facts["model"].startswith("emulated arm64 board (cortex-a72") and facts["soc"] == "cortex-a72"
    facts = _board("cortex-a72").emulation_facts(qemu_max)  # QEMU_CPU lost: qemu's `max`
    assert facts["emulated"]["cpu"] is None and "sve" in facts["emulated"]["ran_with"]
    assert "not the configured cortex-a72" in facts["model"] and "unknown" in facts["soc"]


def test_timed_runs_are_skipped_on_an_emulated_target_with_eval_unless_asked():
    from pocketbert.mobile_harness.run import timing_runs

    board, host = Namespace(emulated=True), Namespace()
    assert timing_runs(board, "dev.json", None, None) == (0, 1)
    assert timing_runs(board, "dev.json", 3, 5) == (3, 5)  # asked for explicitly
    assert timing_runs(board, None, None, None) == (10, 50)
    assert timing_runs(host, "dev.json", None, None) == (10, 50)
    assert BoardTarget.emulated is True


def _row(status: str, reason: str | None) -> dict:
    from pocketbert.results import make_record

    device = {"target": "board:arm64", "model": "emulated arm64 board (cortex-a76, qemu-user)",
              "emulated": {"emulator": "qemu-user", "cpu": "cortex-a76"}}
    return make_record(model="student", role="candidate", format="onnx", runtime="onnxruntime", precision="int8",
                       seq_len=64, device=device, status=status, reason=reason, load_ms=5.0,
                       latency_ms={k: 5.0 for k in ("mean", "p50", "p90", "p99", "trimmed_mean", "min", "max")}
                       | {"n": 2, "warmup": 1})


def test_a_failed_row_prints_its_reason_not_only_its_emulated_timing(tmp_path, capsys, monkeypatch):
    from pocketbert.mobile_harness import cli, run, targets

    monkeypatch.setattr(targets, "parse_target", lambda *args, **kwargs: Namespace())
    reason = "device outputs fail the rule: argmax agreement 40%"
    monkeypatch.setattr(run, "run_on_device", lambda *args, **kwargs: [_row("failed", reason), _row("ok", None)])
    args = Namespace(target="board:arm64", workdir=None, timeout=60, ssh_option=[], remote_python=None, artifacts=["a"],
                     out=str(tmp_path), baseline=None, warmup=None, runs=None, threads=None, seq_len=None, runner=[],
                     eval=None, max_questions=None, no_verify=False)
    assert cli.run_command(args) == 1
    failed, passed = capsys.readouterr().out.splitlines()[:2]
    assert ": failed (" in failed and reason in failed and "emulated timing, not a latency" in failed
    assert reason not in passed


def test_device_run_help_has_no_none_defaults_and_documents_warmup_and_runs(capsys):
    with pytest.raises(SystemExit):
        main(["device", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "default: None" not in text
    assert "--warmup WARMUP untimed runs" in text and "--runs RUNS timed runs" in text


@pytest.mark.parametrize("extra", [[], ["--threads", "0"], ["--timeout", "-1"], ["--max-questions", "0"]])
def test_a_failed_host_run_leaves_no_temp_folder(tmp_path, capsys, monkeypatch, extra):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["device", "run", str(tmp_path / "no-such-artifact"), "--target", "host", "--out",
                 str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pocketbert: error: ") and err.count("\n") == 1
    assert (extra[0] if extra else "no-such-artifact") in err
    assert list(scratch.iterdir()) == []  # no empty pocketbert-host-device-* folder
