"""Standalone benchmark runner that travels inside a device bundle (ssh boards and the host target).

It needs only numpy and the artifact's runtime package on the device (onnxruntime, ai-edge-litert or
tflite-runtime, executorch + torch) -- never pocketbert; pocketbert's sessions.py travels beside it, so the device
opens the artifact with the runtime settings its manifest records, as every host runner does. Usage:

    python3 device_runner.py BUNDLE_DIR
    python3 device_runner.py --facts      (only print what the device says about itself)

It reads BUNDLE_DIR/bundle.json, loads the artifact, runs the timed input warm-up + N times, runs the judge inputs
once each (and, when bundle.json has "eval", every eval window) and saves their outputs, one .npy per output name
bundle.json lists (start_logits and end_logits for QA, logits for a classifier), reads what the device says about
itself, and writes BUNDLE_DIR/result.json (raw timings). The host judges the outputs by the rulebook and scores
them: the device only runs.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import struct
import sys
import time
from pathlib import Path

import numpy as np


def sessions():
    """pocketbert/sessions.py, shipped beside this file in the bundle (not needed for --facts)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sessions as shipped  # lazy: only importable once its folder is on sys.path, and --facts runs without it

    return shipped


def load_onnx(path: Path, threads: int | None, seq_len: int, output_names: list[str], settings: dict):
    """(run(feed) -> outputs, (runtime, version)) for an ONNX artifact in onnxruntime with the manifest's settings."""
    import onnxruntime as ort  # lazy: a device has only the runtime of the artifacts it runs

    session = sessions().onnx_session(path, settings, threads)
    wanted = {i.name: i for i in session.get_inputs()}

    def run(feed):
        cast = {name: value.astype(np.int32 if "int32" in wanted[name].type else np.int64) for name, value in feed.items()}
        return session.run(output_names, cast)

    return run, ("onnxruntime", ort.__version__)


def load_tflite(path: Path, threads: int | None, seq_len: int, output_names: list[str], settings: dict):
    """(run, runtime) for a .tflite artifact: the signature that takes `seq_len`, in LiteRT or tflite-runtime."""
    interpreter, package = sessions().tflite_interpreter(path, settings, threads or None)
    runtime = ("litert", version(package) if package == "ai-edge-litert" else f"{package} {version(package)}")
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


def load_executorch(path: Path, threads: int | None, seq_len: int, output_names: list[str], settings: dict):
    """(run, runtime) for a .pte artifact: its forward method in the ExecuTorch Python runtime."""
    import torch  # lazy: heavy, and only ExecuTorch artifacts need it on the device
    from executorch.runtime import Runtime  # lazy: a device has only the runtime of the artifacts it runs

    if threads:
        torch.set_num_threads(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(feed):
        return [out.numpy() for out in method.execute([torch.from_numpy(value) for value in feed.values()])]

    return run, ("executorch", version("executorch"))


LOADERS = {"onnx": load_onnx, "tflite": load_tflite, "executorch": load_executorch}


def version(package: str) -> str | None:
    """The installed version of `package`, or None where it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def read_text(path: str) -> str | None:
    """A small system file's text, stripped (NULs dropped, as in device-tree files); None where unreadable."""
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
    """The first value of field `name` in /proc/cpuinfo text (None when absent)."""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                 if line.split(":", 1)[0].strip() == name), None)


# The aarch64 bits of AT_HWCAP and AT_HWCAP2, named as the kernel prints them in /proc/cpuinfo's "Features" line.
# Source: Linux arch/arm64/include/uapi/asm/hwcap.h (HWCAP_* bit n is 1 << n) and the hwcap_str table of
# arch/arm64/kernel/cpuinfo.c. The int8 / fp16 / bf16 kernels a runtime picks hang on asimd, asimddp (sdot),
# i8mm (smmla), bf16, sve, sve2 and sme.
AT_NULL, AT_HWCAP, AT_HWCAP2 = 0, 16, 26
AARCH64_HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
                 "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
AARCH64_HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
                  "svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 smei8i32 smef16f32 "
                  "smeb16f32 smef32f32 smefa64 wfxt ebf16 sveebf16 cssc rprfm sve2p1 sme2 sme2p1").split()


def parse_auxv(data: bytes, word: str = "L") -> dict[int, int]:
    """/proc/self/auxv as {AT_* type: value}: pairs of native unsigned longs (`word`, a struct code), up to AT_NULL."""
    size = struct.calcsize(f"@{word}{word}")
    entries = {}
    for offset in range(0, len(data) - size + 1, size):
        key, value = struct.unpack_from(f"@{word}{word}", data, offset)
        if key == AT_NULL:
            break
        entries[key] = value
    return entries


def hwcap_names(hwcap: int, hwcap2: int) -> list[str]:
    """The aarch64 feature names of the AT_HWCAP / AT_HWCAP2 bits that are set, in the kernel's order."""
    return [name for bit, name in enumerate(AARCH64_HWCAP) if hwcap >> bit & 1] + \
        [name for bit, name in enumerate(AARCH64_HWCAP2) if hwcap2 >> bit & 1]


def running_hwcaps(auxv: str = "/proc/self/auxv") -> list[str] | None:
    """The features this very process was granted (AT_HWCAP/AT_HWCAP2 of its auxv): under qemu-user they are the
    emulated core's, whatever /proc/cpuinfo claims. None off aarch64 or where auxv cannot be read."""
    if platform.machine() not in ("aarch64", "arm64"):
        return None
    try:
        entries = parse_auxv(Path(auxv).read_bytes())
    except (OSError, ValueError):
        return None
    if AT_HWCAP not in entries:
        return None
    return hwcap_names(entries[AT_HWCAP], entries.get(AT_HWCAP2, 0))


def device_facts() -> dict:
    """What a Linux board says about itself, where readable (None elsewhere). `cpu_features` are the features the
    process runs with (AT_HWCAP/AT_HWCAP2 of its auxv) where readable, else /proc/cpuinfo's "Features" line;
    `cpu_features_source` says which, and `cpuinfo_features` keeps cpuinfo's line where the two differ."""
    cpuinfo = read_text("/proc/cpuinfo") or ""
    part = cpuinfo_field(cpuinfo, "CPU part")
    soc = cpuinfo_field(cpuinfo, "Hardware") or cpuinfo_field(cpuinfo, "model name") or (
        ARM_PARTS.get(part, f"Arm CPU part {part}") if part else None)
    # Arm's "Features" line says which int8/fp16 kernels the runtimes may pick: asimddp, i8mm, sve, sme, ...
    listed = (cpuinfo_field(cpuinfo, "Features") or "").split() or None
    running = running_hwcaps()
    features = {"cpu_features": running or listed,
                "cpu_features_source": "auxv" if running else "/proc/cpuinfo" if listed else None}
    if running and listed and set(running) != set(listed):
        features["cpuinfo_features"] = listed
    os_release = dict(line.split("=", 1) for line in (read_text("/etc/os-release") or "").splitlines() if "=" in line)
    readings = [read_text(str(zone / "temp")) for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*"))]
    temps = [int(t) / 1000 for t in readings if t and t.lstrip("-").isdigit()]
    return {
        "model": read_text("/proc/device-tree/model") or read_text("/sys/devices/virtual/dmi/id/product_name")
        or platform.node(),
        "soc": soc or platform.machine(),
        "os": f"{os_release.get('PRETTY_NAME', platform.system()).strip(chr(34))} (kernel {platform.release()})",
        "abi": platform.machine(),
        "cores": os.cpu_count(),
        **features,
        "governor": read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "thermal": {"max_zone_celsius": max(temps)} if temps else None,
    }


def peak_rss_bytes() -> int | None:
    """VmHWM, this process's own peak (ru_maxrss is carried across exec, so it may be a parent's)."""
    for line in (read_text("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def run_windows(run, bundle: Path, inputs: dict, outputs: list[str]) -> None:
    """Every row once, one at a time as on a phone; output i of every row is saved as [rows, scores] float32 into
    `outputs`[i] (the files bundle.json names, in its output order) for the host to judge or score."""
    windows = {name: np.load(bundle / file) for name, file in inputs.items()}
    rows: list[list[np.ndarray]] = [[] for _ in outputs]
    for row in range(len(next(iter(windows.values())))):
        returned = run({name: value[row:row + 1] for name, value in windows.items()})
        if len(returned) < len(outputs):
            raise SystemExit(f"the artifact returned {len(returned)} outputs, bundle.json names {len(outputs)}")
        for collected, value in zip(rows, returned):
            collected.append(np.asarray(value, np.float32).reshape(1, -1))
    for file, collected in zip(outputs, rows):
        np.save(bundle / file, np.concatenate(collected))


def main(bundle: Path) -> dict:
    """Run the bundle as bundle.json says and return result.json's content: raw timings, device facts, settings."""
    config = json.loads((bundle / "bundle.json").read_text())
    feed = {name: np.load(bundle / file) for name, file in config["inputs"].items()}
    artifact = bundle / config["artifact"]
    settings = config.get("runtime_settings") or {}
    started = time.perf_counter()
    if config["format"] not in LOADERS:
        raise SystemExit(f"format {config['format']} has no runner on this device")
    run, runtime = LOADERS[config["format"]](artifact, config["threads"], config["seq_len"], config["outputs"], settings)
    load_ms = (time.perf_counter() - started) * 1e3

    started = time.perf_counter()
    run(feed)
    first_ms = (time.perf_counter() - started) * 1e3
    for _ in range(config["warmup"]):
        run(feed)
    latencies = []
    for _ in range(config["runs"]):
        started = time.perf_counter()
        run(feed)
        latencies.append((time.perf_counter() - started) * 1e3)

    peak_rss = peak_rss_bytes()  # before the judge and eval windows, so it is the same measurement as without them
    if config.get("judge"):
        run_windows(run, bundle, config["judge"]["inputs"], config["judge"]["outputs"])
    if config.get("eval"):
        run_windows(run, bundle, config["eval"]["inputs"], config["eval"]["outputs"])
    return {
        "runtime": runtime[0], "runtime_version": runtime[1], "load_ms": load_ms, "first_ms": first_ms, "latencies_ms": latencies,
        "warmup": config["warmup"], "peak_rss_bytes": peak_rss, "device": device_facts(),
        "runtime_settings": sessions().applied(settings, config["threads"]),
    }


if __name__ == "__main__":
    if sys.argv[1] == "--facts":
        print(json.dumps(device_facts()))
        sys.exit(0)
    bundle_dir = Path(sys.argv[1])
    result = main(bundle_dir)
    (bundle_dir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "latencies_ms"}))
