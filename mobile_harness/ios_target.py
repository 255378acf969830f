"""iPhones and iPads (`ios:UDID`): the SwiftPM XCTest benchmark in mobile_harness/ios, run by `xcodebuild test`.

The bundle becomes a resource of a staged copy of that package, so the test carries it onto the device;
the test prints one JSON record between markers in its log, which `xcodebuild` relays. Devices are
listed with `xcrun devicectl list devices --json-output FILE`. Both need macOS with Xcode.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pocketbert.errors import PocketbertError
from pocketbert.mobile_harness.bundle import check_outputs, not_measurable, outcome
from pocketbert.mobile_harness.targets import DEFAULT_TIMEOUT_S, TOOL_HINTS, DeviceLost, Target, call, last_line, register_target, split_spec, text

PACKAGE = Path(__file__).with_name("ios")
SCHEME = "PocketbertBench"
BUNDLE_RESOURCE = Path("Tests") / "PocketbertBenchTests" / "Bundle"
RESULT_MARKER = re.compile(r"POCKETBERT_RESULT_BEGIN\s*(\{.*?\})\s*POCKETBERT_RESULT_END", re.DOTALL)
# Keys the Swift test writes: the host adds model, artifact, sizes and the rest from the manifest.
# "logits": the app's (start, end) outputs on the timed input, which the host judges by the rulebook (pocketbert/rules.py).
SWIFT_RECORD_KEYS = ("runtime", "backend", "load_ms", "first_ms", "latency_ms", "peak_rss_bytes", "status", "reason",
                     "device", "logits")
LATENCY_KEYS = ("mean", "p50", "p90", "p99", "trimmed_mean", "min", "max", "n", "warmup")
IOS_LOST = re.compile(r"device (is )?(not connected|disconnected|was disconnected)|Unable to find a destination|"
                      r"lost connection", re.IGNORECASE)


def parse_devicectl_list(data: dict) -> list[dict]:
    """Devices from `devicectl list devices --json-output` (result.devices[]: hardware/device/connection properties)."""
    devices = []
    for entry in (data.get("result") or {}).get("devices", []):
        hardware, props = entry.get("hardwareProperties", {}), entry.get("deviceProperties", {})
        connection = entry.get("connectionProperties", {})
        devices.append({
            "udid": hardware.get("udid") or entry.get("identifier"),
            "name": props.get("name") or "",
            "model": hardware.get("marketingName") or hardware.get("productType"),
            "soc": (hardware.get("cpuType") or {}).get("name"),
            "os": f"{hardware.get('platform', 'iOS')} {props.get('osVersionNumber', '?')} ({props.get('osBuildUpdate', '?')})",
            "state": connection.get("tunnelState") or connection.get("pairingState") or "unknown",
        })
    return devices


def ios_devices() -> list[dict]:
    """The iOS devices Xcode sees now (`xcrun devicectl list devices`), parsed by parse_devicectl_list."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "devices.json"
        result = call(["xcrun", "devicectl", "list", "devices", "--json-output", str(listing)], timeout=120)
        if result.returncode != 0 or not listing.is_file():
            raise PocketbertError(f"`xcrun devicectl list devices` failed: {last_line(result.stderr)}; "
                                  "install Xcode 15 or newer")
        return parse_devicectl_list(json.loads(listing.read_text()))


def parse_xctest_output(log: str) -> dict:
    """The JSON record the Swift benchmark printed between its markers, checked for the expected keys."""
    found = RESULT_MARKER.findall(log)
    if not found:
        raise PocketbertError(f"the iOS benchmark printed no POCKETBERT_RESULT record (last line: "
                              f"{last_line(log.encode())!r}); open the xcodebuild log above")
    try:
        record = json.loads(found[-1])
    except json.JSONDecodeError as err:
        raise PocketbertError(f"the iOS benchmark's record is not valid JSON ({err}); rebuild mobile_harness/ios") from None
    unknown = sorted(set(record) - set(SWIFT_RECORD_KEYS))
    if unknown:
        raise PocketbertError(f"the iOS record has unknown fields {unknown}; update mobile_harness/ios to this pocketbert")
    latency = record.get("latency_ms")
    if record.get("status") == "ok" and (not isinstance(latency, dict) or set(latency) != set(LATENCY_KEYS)):
        raise PocketbertError(f"the iOS record's latency_ms needs exactly {list(LATENCY_KEYS)}; rebuild mobile_harness/ios")
    return record


@register_target
class IosTarget(Target):
    """An iPhone or iPad (`ios:UDID`), running Core ML and ExecuTorch artifacts in the XCTest app via xcodebuild."""

    kind = "ios"
    usage = "ios:UDID"
    default_workdir = ""
    runtimes = ("coreml", "executorch")  # what the XCTest app runs

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.udid = split_spec(spec, self.kind)
        self._own_workdir = workdir is None
        # The "device folder" is a staged copy of the Swift package on this Mac; xcodebuild installs it.
        super().__init__(spec, workdir or tempfile.mkdtemp(prefix="pocketbert-ios-"), timeout)
        self._device: dict | None = None

    @classmethod
    def discover(cls) -> list[dict]:
        if not shutil.which("xcrun"):
            return [{"target": "ios:*", "state": "xcrun not on PATH", "note": TOOL_HINTS["xcrun"]}]
        return [{"target": f"ios:{d['udid']}", "state": d["state"], "note": d["name"]} for d in ios_devices()]

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def measure(self, bundle, runners: dict[str, Path]) -> dict:
        return measure(self, bundle)

    def check(self) -> None:
        devices = {d["udid"]: d for d in ios_devices()}
        if self.udid not in devices:
            known = ", ".join(devices) or "none"
            raise PocketbertError(f"no iOS device '{self.udid}' is connected (devicectl sees: {known}); connect and "
                                  "trust it, enable Developer Mode, or pick one from `pocketbert device list`")
        self._device = devices[self.udid]
        if self._device["state"] in ("unpaired", "unavailable"):
            raise PocketbertError(f"iOS device {self.udid} is {self._device['state']}; unlock it, tap 'Trust', and rerun")

    def package_dir(self, bundle_name: str) -> Path:
        """The staged copy of the Swift package that carries this bundle onto the device."""
        return Path(self.workdir) / bundle_name

    def push(self, local: Path, remote: str) -> None:
        package = Path(remote)
        shutil.copytree(PACKAGE, package, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".build", "*.md"))
        shutil.copytree(local, package / BUNDLE_RESOURCE, dirs_exist_ok=True)

    def run(self, argv, timeout=None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        # xcodebuild finds Package.swift in its working directory, hence cwd.
        result = call([str(a) for a in argv], timeout=timeout or self.timeout, cwd=cwd)
        if result.returncode != 0 and IOS_LOST.search(text(result.stdout) + text(result.stderr)):
            raise DeviceLost(f"iOS device {self.udid} is gone ({last_line(result.stderr or result.stdout)}); reconnect it")
        return result

    def pull(self, remote: str, local: Path) -> None:
        shutil.copy2(remote, local)

    def info(self) -> dict:
        if self._device is None:
            self.check()
        assert self._device is not None  # check() sets it or raises
        return {k: self._device[k] for k in ("model", "soc", "os")}

    def free_space(self) -> None:
        return None  # devicectl reports no free space; an install that does not fit fails with its own error

    def remove(self, remote: str) -> None:
        shutil.rmtree(remote, ignore_errors=True)

    def xcodebuild_argv(self, package: Path) -> list[str]:
        """`xcodebuild test` of the staged package on this device (it builds, installs and runs the benchmark)."""
        return ["xcodebuild", "test", "-scheme", SCHEME, "-destination", f"platform=iOS,id={self.udid}",
                "-derivedDataPath", str(package / ".build" / "xcode"), "-allowProvisioningUpdates"]


def measure(target: IosTarget, bundle) -> dict:
    """IosTarget.measure: stage the bundle into the package, run `xcodebuild test`, and turn the record the Swift
    test printed into a row, its logits judged by the rulebook."""
    if bundle.runtime not in target.runtimes:
        return not_measurable(bundle, "iOS here (the XCTest app)", target.runtimes)
    package = target.package_dir(bundle.name)
    target.push(bundle.folder, str(package))
    result = target.run(target.xcodebuild_argv(package), cwd=package)
    log = text(result.stdout) + "\n" + text(result.stderr)
    if result.returncode != 0 and not RESULT_MARKER.search(log):
        return {"status": "failed", "runtime": bundle.runtime, "reason": f"xcodebuild test failed: {last_line(log.encode())}"}
    record = parse_xctest_output(log)
    logits = record.pop("logits", None)
    if record.get("status") == "ok":
        checked = check_outputs([np.asarray(x, np.float32) for x in logits], bundle) if logits else None
        record.update(outputs=checked, **outcome(checked))
    facts = record.pop("device", None) or {}
    # The app knows the machine id (iPhone16,1); devicectl's marketing name stays the row's "model".
    facts["product_type"] = facts.pop("model", None)
    record["device_facts"] = facts
    return record
