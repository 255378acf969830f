"""Devices behind one interface: push files, run an argument list, pull files, describe, measure free space,
measure a bundle. Each platform is one module that registers its Target class here by kind (the part of
`--target` before the colon): linux.py (host, ssh), board.py (board), android.py, ios_target.py.

Every command is an argument list. Where a remote shell must read a command line (`adb shell`, `ssh`),
each argument is quoted with shlex.quote on its own, so device paths and model names with spaces or
quotes arrive as they were written.
"""
from __future__ import annotations

import importlib
import posixpath
import shlex
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pocketbert.errors import PocketbertError

DEFAULT_TIMEOUT_S = 1800
# The modules that register a Target kind; imported on first use, as the export registry finds formats.
PLATFORM_MODULES = ("linux", "board", "android", "ios_target", "browser")


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
    """A tool's output bytes as text; bytes that are not UTF-8 never raise."""
    return data.decode("utf-8", errors="replace")


def last_line(data: bytes) -> str:
    """The last non-empty line of a tool's output, for one-line errors."""
    lines = [line.strip() for line in text(data).splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def parse_df_available(output: str) -> int:
    """Available bytes from `df -k` / `df -Pk` output (POSIX column order; toybox on Android too)."""
    rows = [line.split() for line in output.strip().splitlines()[1:] if line.strip()]
    if not rows:
        raise PocketbertError(f"cannot read free space from df output: {output.strip()[:200]!r}")
    return int(rows[-1][3]) * 1024


@dataclass
class TargetOptions:
    """What `device run` passes to every target; each kind reads the options that apply to it."""

    workdir: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    ssh_options: list[str] = field(default_factory=list)
    remote_python: str | None = None


class Target(ABC):
    """One device, as `device run` uses it: check, info, push, run, pull, measure a bundle, remove, close."""

    kind: ClassVar[str]  # the registry key: `--target KIND[:...]`
    default_workdir: ClassVar[str]
    # "KIND:..." as `device run --help` and errors show it.
    usage: ClassVar[str]

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.spec = spec
        self.workdir = workdir or self.default_workdir
        self.timeout = timeout

    @classmethod
    def from_spec(cls, spec: str, options: TargetOptions) -> "Target":
        """The target that `--target SPEC` names, with the options of its kind; refused in one line if malformed."""
        return cls(spec, options.workdir, options.timeout)

    @classmethod
    def discover(cls) -> list[dict]:
        """Targets of this kind reachable now: {target, state, note}; absent tools are a row, not an error."""
        return []

    @abstractmethod
    def measure(self, bundle, runners: dict[str, Path]) -> dict:
        """Run one bundle on the device: status/reason, runtime, timings, outputs check, device_facts."""

    def close(self) -> None:
        """Remove what this target made on the host for the run (a staging folder); nothing by default."""

    def path(self, *parts: str) -> str:
        """A path under the target's workdir, in the device's (POSIX) form."""
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
        """Delete a bundle from the device once it was measured."""
        self.run(["rm", "-rf", remote])



TARGET_KINDS: dict[str, type[Target]] = {}


def register_target(cls: type[Target]) -> type[Target]:
    """Class decorator: make `cls` the Target of its `kind` in `--target KIND:...`."""
    TARGET_KINDS[cls.kind] = cls
    return cls


def _discover() -> None:
    for name in PLATFORM_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def split_spec(spec: str, kind: str) -> str:
    """The part after "KIND:", refused in one line when empty (android: with no serial, ios: with no id)."""
    rest = spec.split(":", 1)[1] if ":" in spec else ""
    if not rest:
        raise PocketbertError(f"target '{spec}' names no device: use {TARGET_KINDS[kind].usage} "
                              "(see `pocketbert device list`)")
    return rest


def parse_target(spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 ssh_options: list[str] | None = None, remote_python: str | None = None) -> Target:
    """The Target for `--target SPEC`, from the kind before its colon; an unknown kind is refused with the known ones."""
    _discover()
    kind = spec.split(":", 1)[0]
    if kind not in TARGET_KINDS:
        usages = ", ".join(cls.usage for cls in TARGET_KINDS.values())
        raise PocketbertError(f"unknown target '{spec}'; use {usages} (see `pocketbert device list`)")
    options = TargetOptions(workdir, timeout, list(ssh_options or []), remote_python)
    return TARGET_KINDS[kind].from_spec(spec, options)


def target_usages() -> str:
    """Every kind's usage ("host | ssh:user@host[:port] | ..."), for help and errors."""
    _discover()
    return " | ".join(cls.usage for cls in TARGET_KINDS.values())


def list_targets() -> list[dict]:
    """Every target reachable now, with its state; tools that are absent are reported, not fatal."""
    _discover()
    return [entry for cls in TARGET_KINDS.values() for entry in cls.discover()]
