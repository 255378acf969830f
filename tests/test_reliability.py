"""What a user trips on: killed and interrupted runs leave nothing behind, bad output places are one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pocketbert.cli import main
from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_dir, interrupts_handled, raise_if_interrupted

# A stage that writes its output through atomic_dir and then waits, run as `pocketbert slow --out DIR`.
SLOW_STAGE = textwrap.dedent("""
    import sys, time
    from pocketbert import cli
    from pocketbert.fsutil import atomic_dir

    def slow(args):
        with atomic_dir(args.out) as tmp:
            (tmp / "partial.bin").write_bytes(b"x" * 1000)
            print("writing", flush=True)
            time.sleep(60)

    def register(sub):
        sub.add_parser("slow").add_argument("--out")
        sub.choices["slow"].set_defaults(func=slow)

    sys.modules["slow_stage"] = sys.modules[__name__]
    cli.STAGE_CLIS = (*cli.STAGE_CLIS, "slow_stage")
    sys.exit(cli.main(["slow", "--out", sys.argv[1]]))
""")


def _start_slow_stage(out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", SLOW_STAGE, str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"  # the temp folder exists now
    return process


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_end_a_stage_with_one_line_and_no_temp(tmp_path, signum, code):
    out = tmp_path / "artifact"
    process = _start_slow_stage(out)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert err.strip() == f"pocketbert: interrupted ({signal.Signals(signum).name}); nothing half-written was kept"
    assert not out.exists() and _temps(out) == []


def test_a_killed_stage_leaves_a_temp_that_the_next_run_removes(tmp_path):
    out = tmp_path / "artifact"
    killed = _start_slow_stage(out)
    killed.kill()  # SIGKILL: no handler runs
    killed.wait(timeout=60)
    # The lock file stays too, but holds no lock: the kernel released it with the process (tests/test_safety.py).
    assert _temps(out) == [".artifact.lock", f".artifact.tmp-{killed.pid}"]
    alive = _start_slow_stage(tmp_path / "other")  # a concurrent run's temp is not stale
    os.rename(tmp_path / f".other.tmp-{alive.pid}", tmp_path / f".artifact.tmp-{alive.pid}")
    try:
        with atomic_dir(out) as tmp:
            (tmp / "model.bin").write_text("done")
        assert (out / "model.bin").read_text() == "done"
        assert _temps(out) == [f".artifact.tmp-{alive.pid}"]
    finally:
        alive.kill()
        alive.wait(timeout=60)


def test_a_swap_killed_half_way_gets_the_previous_output_back(tmp_path):
    out = tmp_path / "artifact"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old = tmp_path / f".artifact.old-{int(dead.stdout)}"  # moved aside, the new one not yet in place
    old.mkdir()
    (old / "model.bin").write_text("previous")
    with pytest.raises(PocketbertError, match="already exists"):
        with atomic_dir(out):
            pass
    assert (out / "model.bin").read_text() == "previous" and _temps(out) == []


def test_an_interrupt_swallowed_inside_a_library_still_stops_the_output(tmp_path):
    """A jax callback inside the TFLite converter once caught Ctrl-C and the export carried on."""
    out = tmp_path / "artifact"
    with interrupts_handled():
        with pytest.raises(KeyboardInterrupt):
            with atomic_dir(out) as tmp:
                (tmp / "model.bin").write_text("half")
                try:  # the library's callback: the interrupt arrives and is swallowed
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1)
                except KeyboardInterrupt:
                    pass
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    assert not out.exists() and _temps(out) == []


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new entries even to root
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _squad(tmp_path: Path) -> tuple[str, str]:
    context = "The bridge reopened in 2021."
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "When did the bridge reopen?",
         "answers": [{"text": "2021", "answer_start": context.index("2021")}]}]}]}]}
    (tmp_path / "dev.json").write_text(json.dumps(data))
    (tmp_path / "predictions.json").write_text(json.dumps({"q1": "2021"}))
    return str(tmp_path / "dev.json"), str(tmp_path / "predictions.json")


@pytest.mark.parametrize("place", ["read-only", "under-a-file"])
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, place):
    dev, predictions = _squad(tmp_path)
    (tmp_path / "a-file").write_text("")
    parent = _read_only_folder(tmp_path) if place == "read-only" else tmp_path / "a-file"
    out = str(parent / "pocketbert-out")
    commands = [["eval", "--predictions", predictions, "--data", dev, "--out", out],
                ["bench", str(tmp_path), "--no-baseline", "--out", out],
                ["data", "make-qa", "--out", out]]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("pocketbert: error: ") and err.count("\n") == 1, err
        assert ("is a file" in err) if place == "under-a-file" else ("pocketbert-out" in err or str(parent) in err)
    assert not Path(out).exists()


def test_an_output_path_that_is_a_file_is_refused_and_the_file_kept(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(PocketbertError, match="is a file, not a folder"):
        with atomic_dir(notes, force=True):  # --force replaces an earlier output folder, never a user's file
            pass
    assert notes.read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
