"""Android phones: TFLite through Google's `benchmark_model`, ExecuTorch through `executor_runner`.

Both are native binaries built with the NDK (mobile_harness/README.md) and passed with
`--runner tflite=PATH` / `--runner executorch=PATH`. Their console output is the interface: the
parsers below read the lines those tools print (formats cited in tests/test_device_android.py).
"""
from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import numpy as np

from pocketbert.errors import PocketbertError
from pocketbert.mobile_harness.bundle import check_outputs, not_measurable, outcome
from pocketbert.mobile_harness.targets import (
    DEFAULT_TIMEOUT_S,
    TOOL_HINTS,
    DeviceLost,
    Target,
    call,
    last_line,
    parse_df_available,
    register_target,
    remote_command,
    split_spec,
    text,
)
from pocketbert.results import latency_stats

# The native runner of each runtime (the runtime names are the export registry's).
RUNNER_NAMES = {"litert": "benchmark_model", "executorch": "executor_runner"}
RUNNER_FORMATS = {"litert": "tflite", "executorch": "executorch"}  # what --runner FORMAT=PATH names
NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
TFLITE_TIMINGS = re.compile(rf"Inference timings in us: Init: {NUMBER}, First inference: {NUMBER}, "
                            rf"Warmup \(avg\): {NUMBER}, Inference \(avg\): {NUMBER}")
# benchmark_model prints one such line per phase (warm-up, then the timed runs; a phase of one run prints only
# "count=1 curr=..."); p5/median/p95 appear in newer builds.
TFLITE_STATS = re.compile(rf"count={NUMBER} first={NUMBER} curr={NUMBER} min={NUMBER} max={NUMBER} avg={NUMBER} "
                          rf"std={NUMBER}(?: p5={NUMBER} median={NUMBER} p95={NUMBER})?")
TFLITE_MEMORY = re.compile(rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                           rf"init={NUMBER} overall={NUMBER}")
ET_LOADED = re.compile(rf"Model loaded in {NUMBER} ms")
ET_ITERATION = re.compile(rf"Iteration (\d+) of (\d+): {NUMBER} ms")
ET_TOTAL = re.compile(rf"Model executed successfully (\d+) time\(s\) in {NUMBER} ms")


def parse_benchmark_model(output: str, warmup: int) -> dict:
    """Timings (microseconds in, milliseconds out) and memory from benchmark_model's log."""
    timings = TFLITE_TIMINGS.search(output)
    if not timings:
        raise PocketbertError(f"benchmark_model printed no 'Inference timings in us' line (last line: "
                              f"{last_line(output.encode())!r}); check the graph and flags it was given")
    init_us, first_us, _, mean_us = (float(x) for x in timings.groups())
    stats = TFLITE_STATS.findall(output)
    latency = {"mean": mean_us / 1e3, "p50": None, "p90": None, "p99": None, "trimmed_mean": None,
               "min": None, "max": None, "n": None, "warmup": warmup}
    if stats:
        count, _, _, low, high, _, _, _, median, _ = stats[-1]
        latency.update(min=float(low) / 1e3, max=float(high) / 1e3, n=int(float(count)),
                       p50=float(median) / 1e3 if median else None)
    memory = TFLITE_MEMORY.search(output)
    return {"load_ms": init_us / 1e3, "first_ms": first_us / 1e3, "latency_ms": latency,
            # The tool's own figure: max RSS growth since it started, in MiB (approximate, as it says).
            "peak_rss_bytes": int(float(memory.group(2)) * 2**20) if memory else None}


def parse_executor_runner(output: str, warmup: int) -> dict:
    """executor_runner's log: load time, then one line per execution (the first, warm-ups, timed runs)."""
    loaded = ET_LOADED.search(output)
    iterations = [float(ms) for _, _, ms in ET_ITERATION.findall(output)]
    if not iterations:
        total = ET_TOTAL.search(output)
        if not total:
            raise PocketbertError(f"executor_runner printed no timings (last line: {last_line(output.encode())!r}); "
                                  "check the .pte and the runner build")
        raise PocketbertError("this executor_runner prints only a total time, no per-iteration lines; rebuild it "
                              "from ExecuTorch 1.0 or newer (mobile_harness/README.md)")
    timed = iterations[1 + warmup:]
    if not timed:
        raise PocketbertError(f"executor_runner ran {len(iterations)} times, fewer than 1 + warm-up {warmup} + runs")
    return {"load_ms": float(loaded.group(1)) if loaded else None, "first_ms": iterations[0],
            "latency_ms": latency_stats(timed, warmup=warmup), "peak_rss_bytes": None}


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
    order: Literal["little", "big"] = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    return ELF_MACHINE_ABIS.get(machine, f"ELF machine {machine}")


@register_target
class AndroidTarget(Target):
    """A phone over adb (`android:SERIAL`), running Google's benchmark_model or an ExecuTorch runner."""

    kind = "android"
    usage = "android:SERIAL"
    default_workdir = "/data/local/tmp/pocketbert"

    def __init__(self, spec: str, workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(spec, workdir, timeout)
        self.serial = split_spec(spec, self.kind)
        if re.search(r"[,:]", self.workdir):
            # benchmark_model's --input_layer_value_files is "name:path,name:path" and has no quoting.
            raise PocketbertError(f"--workdir '{self.workdir}' contains ',' or ':', which benchmark_model cannot "
                                  "read in a file list; pick a folder without them")
        self._props: dict | None = None

    @classmethod
    def discover(cls) -> list[dict]:
        if not shutil.which("adb"):
            return [{"target": "android:*", "state": "adb not on PATH", "note": TOOL_HINTS["adb"]}]
        return [{"target": f"android:{serial}", "state": state,
                 "note": "accept the USB debugging prompt" if state == "unauthorized" else ""}
                for serial, state in adb_devices().items()]

    def measure(self, bundle, runners: dict[str, Path]) -> dict:
        return measure(self, bundle, runners)

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
        """The phone's primary ABI (ro.product.cpu.abi): what a pushed runner must be built for."""
        return self.properties().get("ro.product.cpu.abi", "unknown")

    def info(self) -> dict:
        props = self.properties()
        governor = self.run(["cat", "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"])
        thermal = re.search(r"Thermal Status:\s*(\d+)", text(self.run(["dumpsys", "thermalservice"]).stdout))
        features = re.search(r"^Features\s*:\s*(.+)$", text(self.run(["cat", "/proc/cpuinfo"]).stdout), re.MULTILINE)
        return {
            "model": " ".join(filter(None, (props.get("ro.product.manufacturer"), props.get("ro.product.model")))) or None,
            "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware"),
            "os": f"Android {props.get('ro.build.version.release', '?')} (SDK {props.get('ro.build.version.sdk', '?')})",
            "abi": props.get("ro.product.cpu.abi"),
            "governor": text(governor.stdout).strip() or None if governor.returncode == 0 else None,
            # Android's thermal status: 0 none, 1 light, 2 moderate, 3 severe ... (PowerManager.THERMAL_STATUS_*).
            "thermal": {"status": int(thermal.group(1))} if thermal else None,
            # Which int8/fp16 kernels the runtimes may use: asimddp, i8mm, sve, sme, ...
            "cpu_features": features.group(1).split() if features else None,
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



def runner_argv(runtime: str, binary: str, bundle, target: AndroidTarget) -> list[str]:
    """The command line that runs this bundle on the phone through benchmark_model (litert) or executor_runner."""
    config = bundle.config
    remote = lambda name: target.path(bundle.name, name)  # noqa: E731
    artifact = remote(config["artifact"])
    names, length = list(config["raw_inputs"]), config["seq_len"]
    if runtime == "litert":
        argv = [binary, f"--graph={artifact}", "--use_xnnpack=true", f"--warmup_runs={config['warmup']}",
                "--warmup_min_secs=0", f"--num_runs={config['runs']}", "--min_secs=0",
                f"--input_layer={','.join(names)}",
                f"--input_layer_shape={':'.join(f'1,{length}' for _ in names)}",
                f"--input_layer_value_files={','.join(f'{n}:{remote(f)}' for n, f in config['raw_inputs'].items())}"]
        if len(bundle.manifest["sequence"]["lengths"]) > 1:
            argv.append(f"--signature_to_run_for_benchmark=seq{length}")
    else:
        argv = [binary, f"--model_path={artifact}",
                f"--inputs={','.join(remote(f) for f in config['raw_inputs'].values())}",
                f"--num_executions={1 + config['warmup'] + config['runs']}",
                f"--output_file={remote('output')}"]
        if bundle.manifest["sequence"]["dynamic"]:
            argv.append(f"--input_shapes={','.join(f'1x{length}' for _ in names)}")
    if config["threads"]:
        argv.append(f"--{'num_threads' if runtime == 'litert' else 'cpu_threads'}={config['threads']}")
    return argv


def measure(target: AndroidTarget, bundle, runners: dict[str, Path]) -> dict:
    """AndroidTarget.measure: push the runner and the bundle, run it, and read its console output (and, for
    executor_runner, its output files, which the rulebook judges) into a row."""
    runtime = bundle.runtime
    if runtime not in RUNNER_NAMES:
        return not_measurable(bundle, "Android here", tuple(f"{r} ({RUNNER_NAMES[r]})" for r in RUNNER_NAMES))
    binary = runners.get(RUNNER_FORMATS[runtime])
    if binary is None:
        raise PocketbertError(f"pass --runner {RUNNER_FORMATS[runtime]}=PATH to an NDK-built {RUNNER_NAMES[runtime]} "
                              "(see mobile_harness/README.md)")
    target.check_runner(binary)
    remote_binary = target.path("bin", binary.name)
    target.push(binary, remote_binary)
    target.run(["chmod", "755", remote_binary])
    target.push(bundle.folder, target.path(bundle.name))
    result = target.run(runner_argv(runtime, remote_binary, bundle, target))
    output = text(result.stdout) + "\n" + text(result.stderr)
    if result.returncode != 0:
        return {"status": "failed", "runtime": runtime,
                "reason": f"{RUNNER_NAMES[runtime]} exited {result.returncode}: {last_line(output.encode())}"}
    if runtime == "litert":
        return {**parse_benchmark_model(output, bundle.config["warmup"]), "runtime": runtime, "outputs": None, **outcome(None)}
    parsed = parse_executor_runner(output, bundle.config["warmup"])
    outputs = []
    for index in range(len(bundle.config["outputs"])):  # executor_runner writes output-0.bin ... in the graph's order
        local = bundle.folder / f"device_output-{index}.bin"
        target.pull(target.path(bundle.name, f"output-{index}.bin"), local)
        outputs.append(np.fromfile(local, dtype=np.float32))
    checked = check_outputs(outputs, bundle)
    return {**parsed, "runtime": runtime, "outputs": checked, **outcome(checked)}
