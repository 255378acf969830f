"""Standalone benchmark runner that travels inside a device bundle (ssh boards and the host target).

It needs only numpy and the artifact's runtime package on the device (onnxruntime, ai-edge-litert or
tflite-runtime, executorch + torch) -- never pocketbert; pocketbert's comparison.py travels beside it. Usage:

    python3 device_runner.py BUNDLE_DIR
    python3 device_runner.py --facts      (only print what the device says about itself)

It reads BUNDLE_DIR/bundle.json, loads the artifact, runs the fixed inputs warm-up + N times, compares
the outputs with the expected ones, reads what the device says about itself, and writes
BUNDLE_DIR/result.json (raw timings; the host turns them into statistics). When bundle.json has "eval", it
also runs every question window once and saves the logits, from which the host scores EM/F1.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def load_onnx(path: Path, threads: int | None, seq_len: int, output_names: list[str]):
    import onnxruntime as ort

    settings = ort.SessionOptions()
    # As on the host (export/formats/onnx.py): idle threads spinning between runs would slow what runs next.
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        settings.intra_op_num_threads = threads
        settings.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    wanted = {i.name: i for i in session.get_inputs()}

    def run(feed):
        cast = {name: value.astype(np.int32 if "int32" in wanted[name].type else np.int64) for name, value in feed.items()}
        return session.run(output_names, cast)

    return run, ("onnxruntime", ort.__version__)


def load_tflite(path: Path, threads: int | None, seq_len: int, output_names: list[str]):
    try:
        from ai_edge_litert.interpreter import Interpreter
        runtime = ("litert", version("ai-edge-litert"))
    except ImportError:  # the older, smaller wheel some boards ship
        from tflite_runtime.interpreter import Interpreter
        runtime = ("litert", "tflite-runtime " + version("tflite-runtime"))
    interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
    signatures = interpreter.get_signature_list()
    if signatures:
        # One file holds each fixed length as a signature; pick the one whose inputs have this length.
        for key in signatures:
            runner = interpreter.get_signature_runner(key)
            if all(detail["shape"][-1] == seq_len for detail in runner.get_input_details().values()):
                break
        else:
            raise SystemExit(f"no signature of {path.name} takes length {seq_len}: {sorted(signatures)}")

        def run(feed):
            details = runner.get_input_details()
            out = runner(**{name: value.astype(details[name]["dtype"]) for name, value in feed.items()})
            return [out[name] for name in output_names]

        return run, runtime
    raise SystemExit(f"{path.name} has no signatures; re-export it with pocketbert export")


def load_executorch(path: Path, threads: int | None, seq_len: int, output_names: list[str]):
    import torch
    from executorch.runtime import Runtime

    if threads:
        torch.set_num_threads(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(feed):
        return [out.numpy() for out in method.execute([torch.from_numpy(value) for value in feed.values()])]

    return run, ("executorch", version("executorch"))


LOADERS = {"onnx": load_onnx, "tflite": load_tflite, "executorch": load_executorch}


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip().replace("\x00", "")
    except OSError:
        return None


# "CPU part" of Arm's own cores in /proc/cpuinfo (implementer 0x41), for boards whose kernel names no SoC.
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
             "0xd49": "Neoverse-N2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3"}


def cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                 if line.split(":", 1)[0].strip() == name), None)


def device_facts() -> dict:
    """What a Linux board says about itself, where readable (None elsewhere)."""
    cpuinfo = read_text("/proc/cpuinfo") or ""
    part = cpuinfo_field(cpuinfo, "CPU part")
    soc = cpuinfo_field(cpuinfo, "Hardware") or cpuinfo_field(cpuinfo, "model name") or (
        ARM_PARTS.get(part, f"Arm CPU part {part}") if part else None)
    # Arm's "Features" line says which int8/fp16 kernels the runtimes may pick: asimddp, i8mm, sve, sme, ...
    os_release = dict(line.split("=", 1) for line in (read_text("/etc/os-release") or "").splitlines() if "=" in line)
    temps = [read_text(str(zone / "temp")) for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*"))]
    temps = [int(t) / 1000 for t in temps if t and t.lstrip("-").isdigit()]
    return {
        "model": read_text("/proc/device-tree/model") or read_text("/sys/devices/virtual/dmi/id/product_name")
        or platform.node(),
        "soc": soc or platform.machine(),
        "os": f"{os_release.get('PRETTY_NAME', platform.system()).strip(chr(34))} (kernel {platform.release()})",
        "abi": platform.machine(),
        "cores": os.cpu_count(),
        "cpu_features": (cpuinfo_field(cpuinfo, "Features") or "").split() or None,
        "governor": read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "thermal": {"max_zone_celsius": max(temps)} if temps else None,
    }


def peak_rss_bytes() -> int | None:
    """VmHWM, this process's own peak (ru_maxrss is carried across exec, so it may be a parent's)."""
    for line in (read_text("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def run_eval(run, bundle: Path, config: dict) -> None:
    """Every question window once, one at a time as on a phone; the logits are saved for the host to score."""
    windows = {name: np.load(bundle / file) for name, file in config["eval"]["inputs"].items()}
    starts, ends = [], []
    for row in range(len(next(iter(windows.values())))):
        start, end = run({name: value[row:row + 1] for name, value in windows.items()})[:2]
        starts.append(np.asarray(start, np.float32).reshape(1, -1))
        ends.append(np.asarray(end, np.float32).reshape(1, -1))
    for file, logits in zip(config["eval"]["outputs"], (starts, ends)):
        np.save(bundle / file, np.concatenate(logits))


def main(bundle: Path) -> dict:
    config = json.loads((bundle / "bundle.json").read_text())
    feed = {name: np.load(bundle / file) for name, file in config["inputs"].items()}
    artifact = bundle / config["artifact"]
    started = time.perf_counter()
    if config["format"] not in LOADERS:
        raise SystemExit(f"format {config['format']} has no runner on this device")
    run, runtime = LOADERS[config["format"]](artifact, config["threads"], config["seq_len"], config["outputs"])
    load_ms = (time.perf_counter() - started) * 1e3

    started = time.perf_counter()
    outputs = run(feed)
    first_ms = (time.perf_counter() - started) * 1e3
    for _ in range(config["warmup"]):
        run(feed)
    latencies = []
    for _ in range(config["runs"]):
        started = time.perf_counter()
        run(feed)
        latencies.append((time.perf_counter() - started) * 1e3)

    peak_rss = peak_rss_bytes()  # before the eval windows, so it is the same measurement as without --eval
    checked = None
    if config.get("expected"):
        from comparison import compare_logits  # pocketbert/comparison.py, shipped beside this file

        expected = [np.load(bundle / file) for file in config["expected"]]
        shaped = [np.asarray(out, np.float32).reshape(exp.shape) for out, exp in zip(outputs, expected)]
        checked = compare_logits(shaped, expected, config.get("tolerance"))
    if config.get("eval"):
        run_eval(run, bundle, config)
    return {
        "runtime": runtime[0], "runtime_version": runtime[1], "load_ms": load_ms, "first_ms": first_ms, "latencies_ms": latencies,
        "warmup": config["warmup"], "peak_rss_bytes": peak_rss, "outputs": checked, "device": device_facts(),
    }


if __name__ == "__main__":
    if sys.argv[1] == "--facts":
        print(json.dumps(device_facts()))
        sys.exit(0)
    bundle_dir = Path(sys.argv[1])
    result = main(bundle_dir)
    (bundle_dir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "latencies_ms"}))
