"""Linux devices that run the bundle with their own Python: this host (`host`) and boards over ssh (`ssh:...`).

Both push the bundle, run device_runner.py with the device's Python (numpy + the artifact's runtime, never
pocketbert), and pull result.json (and, with --eval, the logits of every question window).
"""
from __future__ import annotations

import json
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import ClassVar

from pocketbert.errors import PocketbertError
from pocketbert.mobile_harness.bundle import RUNNER_SCRIPT, Bundle, check_judge_outputs, not_measurable, outcome
from pocketbert.mobile_harness.device_runner import device_facts
from pocketbert.mobile_harness.targets import (
    DEFAULT_TIMEOUT_S,
    DeviceLost,
    Target,
    TargetOptions,
    call,
    last_line,
    parse_df_available,
    register_target,
    remote_command,
    text,
)
from pocketbert.results import latency_stats


class PythonTarget(Target):
    """A device whose measure step is device_runner.py under its own Python."""

    runtimes: ClassVar[tuple[str, ...]] = ("onnxruntime", "litert", "executorch")  # what device_runner.py loads
    remote_python: str

    def measure(self, bundle: Bundle, runners: dict[str, Path]) -> dict:
        if bundle.runtime not in self.runtimes:
            return not_measurable(bundle, self.spec, self.runtimes)
        remote = self.path(bundle.name)
        self.push(bundle.folder, remote)
        result = self.run([self.remote_python, self.path(bundle.name, RUNNER_SCRIPT.name), remote])
        if result.returncode != 0:
            return {"status": "failed", "runtime": bundle.runtime,
                    "reason": f"device runner failed: {last_line(result.stderr)}"}
        local = bundle.folder / "result.json"
        self.pull(self.path(bundle.name, "result.json"), local)
        data = json.loads(local.read_text())
        for name in [*bundle.config["judge"]["outputs"], *(bundle.config["eval"] or {}).get("outputs", [])]:
            self.pull(self.path(bundle.name, name), bundle.folder / name)
        checked = check_judge_outputs(bundle)
        return {"runtime": data["runtime"], "load_ms": data["load_ms"], "first_ms": data["first_ms"],
                "latency_ms": latency_stats(data["latencies_ms"], warmup=data["warmup"]),
                "peak_rss_bytes": data["peak_rss_bytes"], "outputs": checked,
                "runtime_settings": data.get("runtime_settings"),
                "device_facts": {**data["device"], "runtime_version": data["runtime_version"]}, **outcome(checked)}


@register_target
class HostTarget(PythonTarget):
    """This machine, through the same bundle, push, run, pull path as a board; the "device" is a local folder."""

    kind = "host"
    usage = "host"
    default_workdir = ""
    remote_python = sys.executable

    def __init__(self, spec: str = "host", workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self._own_workdir = workdir is None
        super().__init__(spec, workdir or tempfile.mkdtemp(prefix="pocketbert-host-device-"), timeout)

    @classmethod
    def from_spec(cls, spec: str, options: TargetOptions) -> Target:
        if spec != "host":
            raise PocketbertError(f"target '{spec}': this machine is just `host`")
        return cls(spec, options.workdir, options.timeout)

    @classmethod
    def discover(cls) -> list[dict]:
        return [{"target": "host", "state": "ready", "note": "this machine, through the bundle path"}]

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def check(self) -> None:
        Path(self.workdir).mkdir(parents=True, exist_ok=True)

    def push(self, local: Path, remote: str) -> None:
        if local.is_dir():
            shutil.copytree(local, remote, dirs_exist_ok=True)
        else:
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, remote)

    def run(self, argv, timeout=None):
        return call([str(a) for a in argv], timeout=timeout or self.timeout)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copy2(remote, local)

    def info(self) -> dict:
        return device_facts()

    def free_space(self) -> int:
        return shutil.disk_usage(self.workdir).free

    def remove(self, remote: str) -> None:
        shutil.rmtree(remote, ignore_errors=True)


@register_target
class SshTarget(PythonTarget):
    """A Linux board over ssh (`ssh:user@host[:port]`), running the Python runtimes it has installed."""

    kind = "ssh"
    usage = "ssh:user@host[:port]"
    default_workdir = "/tmp/pocketbert-device"

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 ssh_options: list[str] | None = None, remote_python: str = "python3"):
        super().__init__(spec, workdir, timeout)
        match = re.fullmatch(r"ssh:([^@:\s-][^@:\s]*@)?([^@:\s-][^@:\s]*)(?::(\d+))?", spec)
        if not match:
            raise PocketbertError(f"ssh target '{spec}' is not ssh:user@host[:port]; e.g. ssh:pi@192.168.1.20:22")
        self.destination = (match.group(1) or "") + match.group(2)
        self.port = match.group(3) or "22"
        self.ssh_options = list(ssh_options or [])
        self.remote_python = remote_python

    @classmethod
    def from_spec(cls, spec: str, options: TargetOptions) -> Target:
        return cls(spec, options.workdir, options.timeout, options.ssh_options, options.remote_python or "python3")

    @classmethod
    def discover(cls) -> list[dict]:
        return [{"target": cls.usage, "state": "not discoverable",
                 "note": "any Linux board you can `ssh` into without a password"}]

    def _ssh(self) -> list[str]:
        # BatchMode: a password prompt would hang a benchmark; keys only. "--": the destination is never an option.
        options = [arg for opt in self.ssh_options for arg in ("-o", opt)]
        return ["ssh", "-p", self.port, "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", *options, "--",
                self.destination]

    def _remote(self, argv: list[str], timeout: float | None, input: bytes | None = None):
        result = call([*self._ssh(), remote_command(argv)], timeout=timeout or self.timeout, input=input)
        if result.returncode == 255:  # ssh's own failure, never the remote program's
            raise DeviceLost(f"ssh to {self.destination}:{self.port} failed: {last_line(result.stderr)}; "
                             "check the board is up and `ssh -p PORT user@host` works without a password")
        return result

    def check(self) -> None:
        result = self._remote(["mkdir", "-p", self.workdir], timeout=60)
        if result.returncode != 0:
            raise PocketbertError(f"cannot create '{self.workdir}' on {self.destination}: {last_line(result.stderr)}; "
                                  "pass a writable --workdir")

    def run(self, argv, timeout=None):
        return self._remote([str(a) for a in argv], timeout)

    def push(self, local: Path, remote: str) -> None:
        # One tar stream through ssh: no scp path quoting rules, one connection per bundle.
        with tempfile.TemporaryFile() as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                if local.is_dir():
                    for child in sorted(local.iterdir()):
                        tar.add(child, arcname=child.name)
                    target_dir = remote
                else:
                    tar.add(local, arcname=posixpath.basename(remote))
                    target_dir = posixpath.dirname(remote)
            archive.seek(0)
            script = 'mkdir -p "$1" && tar -xf - -C "$1"'
            result = self._remote(["sh", "-c", script, "sh", target_dir], timeout=None, input=archive.read())
        if result.returncode != 0:
            raise PocketbertError(f"copying to {self.destination}:{remote} failed: {last_line(result.stderr)}")

    def pull(self, remote: str, local: Path) -> None:
        result = self._remote(["cat", remote], timeout=None)
        if result.returncode != 0:
            raise PocketbertError(f"reading {self.destination}:{remote} failed: {last_line(result.stderr)}")
        local.write_bytes(result.stdout)

    def info(self) -> dict:
        result = self._remote([self.remote_python, "-", "--facts"], timeout=120, input=RUNNER_SCRIPT.read_bytes())
        if result.returncode != 0:
            raise PocketbertError(f"'{self.remote_python}' on {self.destination} failed: {last_line(result.stderr)}; "
                                  "pass --remote-python PATH to a Python 3 with numpy")
        return json.loads(text(result.stdout))

    def free_space(self) -> int:
        result = self._remote(["df", "-Pk", self.workdir], timeout=60)
        return parse_df_available(text(result.stdout))
