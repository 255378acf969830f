"""Android phones: TFLite through Google's `benchmark_model`, ExecuTorch through `executor_runner`.

Both are native binaries built with the NDK (mobile_harness/README.md) and passed with
`--runner tflite=PATH` / `--runner executorch=PATH`. Their console output is the interface: the
parsers below read the lines those tools print (formats cited in tests/test_device_android.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pocketbert.errors import PocketbertError
from pocketbert.mobile_harness.targets import AndroidTarget, last_line, text

RUNNER_NAMES = {"tflite": "benchmark_model", "executorch": "executor_runner"}
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
    from pocketbert.bench.stats import latency_stats

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


def runner_argv(fmt: str, binary: str, bundle, target: AndroidTarget) -> list[str]:
    config = bundle.config
    remote = lambda name: target.path(bundle.name, name)  # noqa: E731
    artifact = remote(config["artifact"])
    names, length = list(config["raw_inputs"]), config["seq_len"]
    if fmt == "tflite":
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
        argv.append(f"--{'num_threads' if fmt == 'tflite' else 'cpu_threads'}={config['threads']}")
    return argv


def measure(target: AndroidTarget, bundle, runners: dict[str, Path]) -> dict:
    from pocketbert.mobile_harness.run import compare_outputs, outcome

    fmt = bundle.config["format"]
    runtime = {"tflite": "litert", "executorch": "executorch"}.get(fmt, fmt)
    if fmt not in RUNNER_NAMES:
        return {"status": "not_measurable", "runtime": runtime,
                "reason": f"{fmt} has no Android runner here; phones run tflite (benchmark_model) and executorch"}
    binary = runners.get(fmt)
    if binary is None:
        raise PocketbertError(f"pass --runner {fmt}=PATH to an NDK-built {RUNNER_NAMES[fmt]} (see mobile_harness/README.md)")
    target.check_runner(binary)
    remote_binary = target.path("bin", binary.name)
    target.push(binary, remote_binary)
    target.run(["chmod", "755", remote_binary])
    target.push(bundle.folder, target.path(bundle.name))
    result = target.run(runner_argv(fmt, remote_binary, bundle, target))
    output = text(result.stdout) + "\n" + text(result.stderr)
    if result.returncode != 0:
        return {"status": "failed", "runtime": runtime,
                "reason": f"{RUNNER_NAMES[fmt]} exited {result.returncode}: {last_line(output.encode())}"}
    if fmt == "tflite":
        return {**parse_benchmark_model(output, bundle.config["warmup"]), "runtime": runtime, "outputs": None, **outcome(None)}
    parsed = parse_executor_runner(output, bundle.config["warmup"])
    outputs = []
    for index in range(2):
        local = bundle.folder / f"device_output-{index}.bin"
        target.pull(target.path(bundle.name, f"output-{index}.bin"), local)
        outputs.append(np.fromfile(local, dtype=np.float32))
    checked = compare_outputs(outputs, bundle)
    return {**parsed, "runtime": runtime, "outputs": checked, **outcome(checked)}
