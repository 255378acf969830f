"""Devices behind one interface: push files, run an argument list, pull files, describe, measure free space.

Every command is an argument list. Where a remote shell must read a command line (`adb shell`, `ssh`),
each argument is quoted with shlex.quote on its own, so device paths and model names with spaces or
quotes arrive as they were written.
"""
from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from pocketbert.errors import PocketbertError

RUNNER_SCRIPT = Path(__file__).with_name("device_runner.py")
DEFAULT_TIMEOUT_S = 1800


class DeviceLost(PocketbertError):
    """The device stopped answering (unplugged, rebooted, network gone) in the middle of a run."""


def remote_command(argv: list[str]) -> str:
    """One shell command line in which every argument survives the remote shell unchanged."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def call(argv: list[str], timeout: float | None = DEFAULT_TIMEOUT_S, input: bytes | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a local tool; a missing tool is a one-line error that says how to get it."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, input=input, cwd=cwd)
    except FileNotFoundError:
        raise PocketbertError(f"'{argv[0]}' is not installed or not on PATH; {TOOL_HINTS.get(argv[0], 'install it')}") from None
    except subprocess.TimeoutExpired:
        raise DeviceLost(f"'{argv[0]}' did not finish within {timeout:.0f} s; check the device, or raise --timeout") from None


TOOL_HINTS = {
    "adb": "install Android platform-tools (`apt-get install -y adb`) or put adb on PATH",
    "ssh": "install the OpenSSH client (`apt-get install -y openssh-client`)",
    "xcrun": "iOS devices need macOS with Xcode installed",
    "xcodebuild": "iOS devices need macOS with Xcode installed",
}


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def last_line(data: bytes) -> str:
    lines = [line.strip() for line in text(data).splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def parse_df_available(output: str) -> int:
    """Available bytes from `df -k` / `df -Pk` output (POSIX column order; toybox on Android too)."""
    rows = [line.split() for line in output.strip().splitlines()[1:] if line.strip()]
    if not rows:
        raise PocketbertError(f"cannot read free space from df output: {output.strip()[:200]!r}")
    return int(rows[-1][3]) * 1024


class Target(ABC):
    kind: ClassVar[str]
    default_workdir: ClassVar[str]

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.spec = spec
        self.workdir = workdir or self.default_workdir
        self.timeout = timeout

    def path(self, *parts: str) -> str:
        return posixpath.join(self.workdir, *parts)

    @abstractmethod
    def check(self) -> None:
        """Raise a one-line PocketbertError when the device cannot be used now (absent, unauthorized)."""

    @abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy a local file or folder to `remote` on the device (a folder's contents go into `remote`)."""

    @abstractmethod
    def run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run a program on the device; bytes stdout/stderr; DeviceLost when the device is gone."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy one file from the device."""

    @abstractmethod
    def info(self) -> dict:
        """What the device says about itself: model, soc, os, abi, governor, thermal (None where unreadable)."""

    @abstractmethod
    def free_space(self) -> int | None:
        """Free bytes where bundles go (None where the platform does not say)."""

    def remove(self, remote: str) -> None:
        self.run(["rm", "-rf", remote])


class HostTarget(Target):
    """This machine, through the same bundle, push, run, pull path as a board; the "device" is a local folder."""

    kind = "host"
    default_workdir = ""
    remote_python = sys.executable

    def __init__(self, spec: str = "host", workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(spec, workdir or tempfile.mkdtemp(prefix="pocketbert-host-device-"), timeout)

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
        from pocketbert.mobile_harness.device_runner import device_facts

        return device_facts()

    def free_space(self) -> int:
        return shutil.disk_usage(self.workdir).free

    def remove(self, remote: str) -> None:
        shutil.rmtree(remote, ignore_errors=True)


class SshTarget(Target):
    """A Linux board over ssh (`ssh:user@host[:port]`), running the Python runtimes it has installed."""

    kind = "ssh"
    default_workdir = "/tmp/pocketbert-device"

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 ssh_options: list[str] | None = None, remote_python: str = "python3"):
        super().__init__(spec, workdir, timeout)
        match = re.fullmatch(r"ssh:([^@:\s]+@)?([^@:\s]+)(?::(\d+))?", spec)
        if not match:
            raise PocketbertError(f"ssh target '{spec}' is not ssh:user@host[:port]; e.g. ssh:pi@192.168.1.20:22")
        self.destination = (match.group(1) or "") + match.group(2)
        self.port = match.group(3) or "22"
        self.ssh_options = list(ssh_options or [])
        self.remote_python = remote_python

    def _ssh(self) -> list[str]:
        # BatchMode: a password prompt would hang a benchmark; keys only.
        options = [arg for opt in self.ssh_options for arg in ("-o", opt)]
        return ["ssh", "-p", self.port, "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", *options, self.destination]

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
        result = self._remote([self.remote_python, "-", "--facts"], timeout=60, input=RUNNER_SCRIPT.read_bytes())
        if result.returncode != 0:
            raise PocketbertError(f"'{self.remote_python}' on {self.destination} failed: {last_line(result.stderr)}; "
                                  "pass --remote-python PATH to a Python 3 with numpy")
        return json.loads(text(result.stdout))

    def free_space(self) -> int:
        result = self._remote(["df", "-Pk", self.workdir], timeout=60)
        return parse_df_available(text(result.stdout))


ADB_LOST = re.compile(r"device '.*' not found|no devices/emulators found|device offline|device .* not found|"
                      r"protocol fault|connection reset|closed", re.IGNORECASE)
ELF_MACHINE_ABIS = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}


def adb_devices() -> dict[str, str]:
    """{serial: state} from `adb devices` (state: device, unauthorized, offline, ...)."""
    result = call(["adb", "devices"], timeout=60)
    states = {}
    for line in text(result.stdout).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            states[parts[0]] = parts[1]
    return states


def elf_abi(binary: Path) -> str:
    """The Android ABI an ELF binary was built for (from e_machine), or an error naming what it is."""
    header = binary.read_bytes()[:20]
    if header[:4] != b"\x7fELF" or len(header) < 20:
        raise PocketbertError(f"runner '{binary}' is not an ELF executable; build it for Android with the NDK")
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    return ELF_MACHINE_ABIS.get(machine, f"ELF machine {machine}")


class AndroidTarget(Target):
    """A phone over adb (`android:SERIAL`), running Google's benchmark_model or an ExecuTorch runner."""

    kind = "android"
    default_workdir = "/data/local/tmp/pocketbert"

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(spec, workdir, timeout)
        self.serial = spec.split(":", 1)[1]
        if not self.serial:
            raise PocketbertError("android target needs a serial: android:SERIAL (see `pocketbert device list`)")
        self._props: dict | None = None

    def _adb(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        result = call(["adb", "-s", self.serial, *args], timeout=timeout or self.timeout)
        if result.returncode != 0 and ADB_LOST.search(text(result.stderr)):
            raise DeviceLost(f"android device {self.serial} is gone ({last_line(result.stderr)}); "
                             "reconnect it and check `adb devices`")
        return result

    def check(self) -> None:
        states = adb_devices()
        state = states.get(self.serial)
        if state is None:
            known = ", ".join(f"{s} ({st})" for s, st in states.items()) or "none"
            raise PocketbertError(f"no android device '{self.serial}' is connected (adb sees: {known}); "
                                  "plug it in with USB debugging on, or pick one from `pocketbert device list`")
        if state == "unauthorized":
            raise PocketbertError(f"android device {self.serial} is unauthorized; unlock it and accept the "
                                  "'Allow USB debugging' prompt, then rerun")
        if state != "device":
            raise PocketbertError(f"android device {self.serial} is {state}; reconnect it (`adb reconnect`) and rerun")
        self.run(["mkdir", "-p", self.workdir])

    def run(self, argv, timeout=None):
        return self._adb("shell", remote_command([str(a) for a in argv]), timeout=timeout)

    def push(self, local: Path, remote: str) -> None:
        # adb push/pull use the sync protocol: paths are never read by a shell, so no quoting here.
        if local.is_dir():
            self.run(["mkdir", "-p", remote])
            for child in sorted(local.iterdir()):
                self.push(child, posixpath.join(remote, child.name))
            return
        result = self._adb("push", str(local), remote)
        if result.returncode != 0:
            raise PocketbertError(f"adb push to {remote} failed: {last_line(result.stderr)}")

    def pull(self, remote: str, local: Path) -> None:
        result = self._adb("pull", remote, str(local))
        if result.returncode != 0:
            raise PocketbertError(f"adb pull of {remote} failed: {last_line(result.stderr)}")

    def properties(self) -> dict:
        """All `getprop` values ("[key]: [value]" lines), read once."""
        if self._props is None:
            output = text(self.run(["getprop"]).stdout)
            self._props = dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", output, re.MULTILINE))
        return self._props

    def abi(self) -> str:
        return self.properties().get("ro.product.cpu.abi", "unknown")

    def info(self) -> dict:
        props = self.properties()
        governor = self.run(["cat", "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"])
        thermal = re.search(r"Thermal Status:\s*(\d+)", text(self.run(["dumpsys", "thermalservice"]).stdout))
        return {
            "model": " ".join(filter(None, (props.get("ro.product.manufacturer"), props.get("ro.product.model")))) or None,
            "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware"),
            "os": f"Android {props.get('ro.build.version.release', '?')} (SDK {props.get('ro.build.version.sdk', '?')})",
            "abi": props.get("ro.product.cpu.abi"),
            "governor": text(governor.stdout).strip() or None if governor.returncode == 0 else None,
            # Android's thermal status: 0 none, 1 light, 2 moderate, 3 severe ... (PowerManager.THERMAL_STATUS_*).
            "thermal": {"status": int(thermal.group(1))} if thermal else None,
        }

    def free_space(self) -> int:
        return parse_df_available(text(self.run(["df", "-k", self.workdir]).stdout))

    def check_runner(self, binary: Path) -> None:
        """Refuse a runner that is missing or built for another ABI before anything is pushed."""
        if not binary.is_file():
            raise PocketbertError(f"runner binary '{binary}' does not exist; build it as mobile_harness/README.md says")
        built_for, device_abi = elf_abi(binary), self.abi()
        compatible = {device_abi, *self.properties().get("ro.product.cpu.abilist", "").split(",")}
        if built_for not in compatible:
            raise PocketbertError(f"runner '{binary.name}' is built for {built_for} but device {self.serial} is "
                                  f"{device_abi}; rebuild it with the NDK for {device_abi}")


def parse_target(spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 ssh_options: list[str] | None = None, remote_python: str | None = None) -> Target:
    from pocketbert.mobile_harness.ios_target import IosTarget

    kind = spec.split(":", 1)[0]
    if spec == "host":
        return HostTarget(spec, workdir, timeout)
    if kind == "ssh":
        return SshTarget(spec, workdir, timeout, ssh_options, remote_python or "python3")
    if kind == "android":
        return AndroidTarget(spec, workdir, timeout)
    if kind == "ios":
        return IosTarget(spec, workdir, timeout)
    raise PocketbertError(f"unknown target '{spec}'; use host, ssh:user@host[:port], android:SERIAL or ios:UDID "
                          "(see `pocketbert device list`)")


def list_targets() -> list[dict]:
    """Every target reachable now, with its state; tools that are absent are reported, not fatal."""
    from pocketbert.mobile_harness.ios_target import ios_devices

    found = [{"target": "host", "state": "ready", "note": "this machine, through the bundle path"}]
    if shutil.which("adb"):
        for serial, state in adb_devices().items():
            found.append({"target": f"android:{serial}", "state": state,
                          "note": "accept the USB debugging prompt" if state == "unauthorized" else ""})
    else:
        found.append({"target": "android:*", "state": "adb not on PATH", "note": TOOL_HINTS["adb"]})
    if shutil.which("xcrun"):
        for device in ios_devices():
            found.append({"target": f"ios:{device['udid']}", "state": device["state"], "note": device["name"]})
    else:
        found.append({"target": "ios:*", "state": "xcrun not on PATH", "note": TOOL_HINTS["xcrun"]})
    found.append({"target": "ssh:user@host[:port]", "state": "not discoverable",
                  "note": "any Linux board you can `ssh` into without a password"})
    return found
