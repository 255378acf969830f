"""`pocketbert device`: the ssh target against a real sshd on 127.0.0.1, the host target, quoting.

The sshd needs Debian's openssh-server (`apt-get install -y openssh-server`); in CI its absence fails.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketbert.errors import PocketbertError
from pocketbert.mobile_harness.linux import HostTarget, SshTarget
from pocketbert.mobile_harness.run import run_on_device
from pocketbert.mobile_harness.targets import parse_target, remote_command
from pocketbert.results import load_results

SSHD = "/usr/sbin/sshd"
# A workdir a shell would split or unquote: every remote command must survive it.
AWKWARD_DIR = "pocketbert dev's \"dir\" $HOME"


@pytest.fixture(scope="module")
def onnx_artifacts(tmp_path_factory, tiny_distilbert_qa, tiny_bert_qa, export_once):
    root = tmp_path_factory.mktemp("device-artifacts")
    student = export_once(tiny_distilbert_qa, "onnx", root / "student onnx", seq_lens=(64,))
    baseline = export_once(tiny_bert_qa, "onnx", root / "bert-base onnx", seq_lens=(64,))
    assert student["validation"]["passed"] and baseline["validation"]["passed"]
    return root / "student onnx", root / "bert-base onnx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a free loopback port, accepting one throw-away key; yields the ssh target and options."""
    if not Path(SSHD).exists():
        if os.environ.get("CI"):
            pytest.fail("sshd is missing in CI: the Makefile must `apt-get install -y openssh-server`")
        pytest.skip("sshd is absent: `apt-get install -y openssh-server` to run the ssh target for real")
    tmp = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / key)], check=True)
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nStrictModes no\n"
        f"UsePAM no\nPermitRootLogin yes\nPidFile {tmp / 'sshd.pid'}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory sshd insists on
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")], stderr=subprocess.PIPE)
    options = [f"IdentityFile={tmp / 'user_key'}", "IdentitiesOnly=yes", f"UserKnownHostsFile={tmp / 'known_hosts'}",
               "StrictHostKeyChecking=no", "LogLevel=ERROR"]
    spec = f"ssh:{os.environ.get('USER') or 'root'}@127.0.0.1:{port}"
    if os.geteuid() == 0:
        spec = f"ssh:root@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"sshd exited: {server.stderr.read().decode()[-500:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield spec, options, tmp
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_remote_command_quotes_every_argument():
    argv = ["python3", "run me.py", "it's", 'say "hi"', "$HOME", "a;b", "*"]
    assert shlex.split(remote_command(argv)) == argv


def test_ssh_target_runs_a_tiny_onnx_artifact_for_real(sshd, onnx_artifacts, tmp_path):
    spec, options, tmp = sshd
    student, baseline = onnx_artifacts
    workdir = str(tmp / AWKWARD_DIR)
    target = parse_target(spec, workdir=workdir, ssh_options=options, remote_python=sys.executable)
    assert isinstance(target, SshTarget)
    ssh_argv = target._ssh()
    assert ssh_argv[-2:] == ["--", target.destination], "nothing after `--` can be read as an ssh option"

    # Arguments with spaces, quotes and $ reach the remote program unchanged.
    echoed = target.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", AWKWARD_DIR, "a;b"])
    assert json.loads(echoed.stdout) == [AWKWARD_DIR, "a;b"]

    out = tmp_path / "results"
    records = run_on_device(target, [student], out, baseline=baseline, warmup=2, runs=5, threads=1)
    assert [r["role"] for r in records] == ["candidate", "baseline"]
    for record in records:
        assert record["status"] == "ok", record["reason"]
        assert record["device"]["target"] == spec and record["device"]["os"]
        assert record["runtime"] == "onnxruntime" and record["seq_len"] == 64 and record["threads"] == 1
        assert record["latency_ms"]["n"] == 5 and record["latency_ms"]["warmup"] == 2
        assert record["load_ms"] > 0 and record["first_ms"] > 0 and record["peak_rss_bytes"] > 0
    results = load_results(out)
    assert len(results["records"]) == 2
    checks = [m["settings"]["output_checks"] for m in results.get("merged", [])] + [results["settings"]["output_checks"]]
    passed = [c for check in checks for c in check.values()]
    assert passed and all(c["passed"] and c["max_abs_diff"] <= 1e-4 for c in passed)
    assert (out / f"device_latency_{spec.replace(':', '_').replace('@', '_')}.png").is_file()
    assert not Path(workdir, "00-candidate-onnx-fp32").exists(), "the bundle is removed from the device afterwards"


def test_ssh_target_unreachable_is_one_line(tmp_path, sshd):
    _, options, _ = sshd
    target = SshTarget(f"ssh:nobody@127.0.0.1:{free_port()}", ssh_options=options + ["ConnectTimeout=3"])
    with pytest.raises(PocketbertError, match="ssh to nobody@127.0.0.1.*failed"):
        target.check()


def test_host_target_end_to_end_merges_beside_existing_rows(onnx_artifacts, tmp_path):
    student, baseline = onnx_artifacts
    out = tmp_path / "results"
    host = HostTarget()
    first = run_on_device(host, [student], out, warmup=1, runs=3)
    assert not Path(host.workdir).exists(), "the host target's own temp folder is removed after the run"
    again = run_on_device(HostTarget(), [student], out, baseline=baseline, warmup=1, runs=4)
    results = load_results(out)
    # The repeated candidate measurement replaces the older one; the baseline joins beside it.
    assert len(results["records"]) == 2
    assert {r["role"] for r in results["records"]} == {"candidate", "baseline"}
    assert first[0]["device"]["target"] == "host" and again[0]["latency_ms"]["n"] == 4


def test_host_target_runs_a_tflite_file_with_several_signatures(tiny_distilbert_qa, tmp_path):
    """A signature returns its outputs as a dict: they must come back as start, end, not in name order."""
    from pocketbert.export.api import export_model

    folder = tmp_path / "tflite"
    export_model(tiny_distilbert_qa, "tflite", folder, seq_lens=(32, 64))
    for length in (32, 64):
        record, = run_on_device(HostTarget(), [folder], tmp_path / f"results-{length}", warmup=0, runs=1,
                                seq_len=length)
        assert record["status"] == "ok", record["reason"]
        check, = load_results(tmp_path / f"results-{length}")["settings"]["output_checks"].values()
        assert check["argmax_agreement"] == {"start": 1.0, "end": 1.0} and check["passed"]


def test_bad_inputs_are_one_line_errors(onnx_artifacts, tmp_path):
    student, _ = onnx_artifacts
    with pytest.raises(PocketbertError, match="unknown target"):
        parse_target("usb:1234")
    with pytest.raises(PocketbertError, match="ssh:user@host"):
        parse_target("ssh:user@host:notaport")
    for option_like in ("ssh:-oProxyCommand=touch /tmp/pwned", "ssh:-oProxyCommand=x@host"):
        with pytest.raises(PocketbertError, match="ssh:user@host"):
            parse_target(option_like)
    for no_device in ("android:", "ios:", "android", "board:"):
        with pytest.raises(PocketbertError, match=f"target '{no_device}' names no device"):
            parse_target(no_device)
    with pytest.raises(PocketbertError, match="contains ',' or ':'"):
        parse_target("android:SERIAL", workdir="/data/local/tmp/a,b")
    with pytest.raises(PocketbertError, match="does not run length 1000"):
        run_on_device(HostTarget(), [student], tmp_path / "r", seq_len=1000)
    with pytest.raises(PocketbertError, match="does not exist"):
        run_on_device(HostTarget(), [tmp_path / "missing"], tmp_path / "r")


def test_cli_device_list_and_run(onnx_artifacts, tmp_path, capsys):
    from pocketbert.cli import main

    assert main(["device", "list"]) == 0
    listed = capsys.readouterr().out
    assert "host" in listed and "board:arm64" in listed
    student, _ = onnx_artifacts
    assert main(["device", "run", "--target", "host", str(student), "--out", str(tmp_path / "o"),
                 "--warmup", "1", "--runs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "candidate" in printed and "results merged" in printed
    assert main(["device", "run", "--target", "android:", str(student), "--out", str(tmp_path / "o")]) == 2
