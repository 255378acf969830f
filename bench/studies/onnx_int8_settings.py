"""Which ONNX Runtime int8 settings run fastest on this CPU, and what each costs in answers: quantize one fp32 ONNX
artifact several ways (dynamic int8 with signed or unsigned weights, per channel or per tensor, reduced range; the
int8-static QDQ recipe), then time them interleaved with the fp32 file in ONNX Runtime and count how often each
picks the fp32 file's answer span start and end on real QA windows.

The exporter's `--precision int8` uses the settings this measured fastest without losing answers on the machines we
had (README, "ONNX Runtime int8 settings"); the CPU decides (AVX2 multiplies u8 by s8, AVX-512 VNNI has its own
u8 x s8 dot product), so run it on yours: `pocketbert bench onnx-int8-settings ARTIFACT --data dev.json`.
"""
from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketbert.bench.measure import interleave
from pocketbert.errors import PocketbertError, require_module
from pocketbert.export import calibration_windows, get_format
from pocketbert.export import quantize_static_int8_onnx as quantize_static_int8
from pocketbert.fsutil import atomic_dir, check_replaceable
from pocketbert.manifest import read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.results import machine_info, trimmed_mean

AGREEMENT_WINDOWS = 96
SCHEMA = "pocketbert.onnx_int8_settings/1"  # marks its results file, and so the folder, as pocketbert's
RESULTS_FILE = "onnx_int8_settings.json"  # its own name: the results schema's results.json is bench's and eval's
AGREEMENT_BATCH = 8


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    dynamic: dict | None  # quantize_dynamic keyword arguments; None: the int8-static QDQ recipe


def settings(quantization) -> list[Setting]:
    s8, u8 = quantization.QuantType.QInt8, quantization.QuantType.QUInt8
    return [
        Setting("dynamic s8 per-channel", "pocketbert --precision int8", {"weight_type": s8, "per_channel": True}),
        Setting("dynamic s8 per-tensor", "", {"weight_type": s8, "per_channel": False}),
        Setting("dynamic u8 per-channel", "", {"weight_type": u8, "per_channel": True}),
        Setting("dynamic u8 per-tensor", "optimum's --avx2 / --avx512 weights", {"weight_type": u8, "per_channel": False}),
        Setting("dynamic s8 per-channel reduce_range", "7-bit weights (no u8 x s8 saturation on AVX2)",
                {"weight_type": s8, "per_channel": True, "reduce_range": True}),
        Setting("static QDQ", "pocketbert --precision int8-static", None),
    ]


def compare_int8_settings(artifact: str | Path, data: str | Path, out: str | Path, seq_len: int = 384,
                          runs: int = 20, warmup: int = 3, threads: int | None = None) -> dict:
    """Quantize the fp32 ONNX `artifact` with each setting, time all of them interleaved at `seq_len` and score
    answer agreement with fp32 on `data` (a SQuAD v1.1 file); writes results.json, report.md and settings.png."""
    artifact, out = Path(artifact), Path(out)
    manifest = read_manifest(artifact)
    if manifest["format"] != "onnx" or manifest["precision"] != "fp32":
        raise PocketbertError(f"{artifact} holds format {manifest['format']}, precision {manifest['precision']}; pass "
                              "an ONNX fp32 artifact folder (pocketbert export CHECKPOINT --format onnx)")
    if not Path(data).is_file():
        raise PocketbertError(f"data file '{data}' does not exist; pass a SQuAD v1.1 JSON file (e.g. the dev.json "
                              "of `pocketbert data make-qa`)")
    check_replaceable(out, force=True)  # a folder that is not ours fails now, not after quantizing
    quantization = require_module("onnxruntime.quantization", "onnxruntime")
    fp32_file = artifact / manifest["artifact"]
    tokenizer = load_tokenizer(artifact)
    names = tuple(i["name"] for i in manifest["inputs"])
    exporter = get_format("onnx")
    with tempfile.TemporaryDirectory() as tmp, atomic_dir(out, force=True) as staged:
        files = {"fp32": fp32_file}
        for setting in tqdm(settings(quantization), desc="quantize", unit="setting"):
            files[setting.name] = Path(tmp) / f"{len(files)}.onnx"
            if setting.dynamic is None:
                quantize_static_int8(fp32_file, files[setting.name], calibration_windows(tokenizer, names, seq_len))
            else:
                quantization.quantize_dynamic(str(fp32_file), str(files[setting.name]), **setting.dynamic)
        runners = {name: exporter.load(path, manifest, threads) for name, path in files.items()}
        windows = calibration_windows(tokenizer, names, seq_len, data, questions=AGREEMENT_WINDOWS).windows
        agreement = answer_agreement(runners, windows)
        latency = interleaved_latency(runners, {n: w[:1] for n, w in windows.items()}, runs, warmup)
        described = {s.name: s.description for s in settings(quantization)}
        rows = [{"setting": name, "what": described.get(name, "reference"), "ms": latency[name],
                 "vs_fp32": latency["fp32"] / latency[name], "mb": files[name].stat().st_size / 1e6,
                 **agreement[name]} for name in files]
        machine = machine_info()
        results = {"schema": SCHEMA, "artifact": str(artifact.resolve()), "data": str(Path(data).resolve()), "seq_len": seq_len,
                   "runs": runs, "warmup": warmup, "threads": threads, "windows": len(windows["input_ids"]),
                   "machine": machine, "rows": rows}
        (staged / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        (staged / "report.md").write_text(render(results))
        plot(rows, staged / "settings.png", machine["cpu"])
    return results


def answer_agreement(runners: dict, windows: dict[str, np.ndarray]) -> dict[str, dict]:
    """Share of windows whose start / end argmax (over real tokens) equals the fp32 file's."""
    real = windows["attention_mask"] == 1
    picks = {}
    count = len(real)
    for name, runner in tqdm(runners.items(), desc="agreement", unit="file"):
        # A few windows per call: ONNX Runtime's arena keeps the largest batch's activations for the session's life.
        chunks = [runner({k: v[i:i + AGREEMENT_BATCH] for k, v in windows.items()})
                  for i in range(0, count, AGREEMENT_BATCH)]
        picks[name] = [np.where(real, np.concatenate([c[side] for c in chunks]), -np.inf).argmax(-1) for side in (0, 1)]
    return {name: {side: float(np.mean(p == r)) for side, p, r in zip(("start", "end"), picks[name], picks["fp32"])}
            for name in runners}


def interleaved_latency(runners: dict, feed: dict[str, np.ndarray], runs: int, warmup: int) -> dict[str, float]:
    """Trimmed-mean ms of one window per file, the files run in turn (bench's interleaving) so drift hits all."""
    calls = {name: functools.partial(runner, feed) for name, runner in runners.items()}
    with tqdm(total=(warmup + runs) * len(calls), desc="time", unit="call") as progress:
        samples = interleave(calls, warmup, runs, progress)
    failed = {name: reason for name, reason in samples.items() if isinstance(reason, str)}
    if failed:
        raise PocketbertError(f"ONNX Runtime failed to run {', '.join(failed)}: {next(iter(failed.values()))}")
    return {name: trimmed_mean(times) for name, times in samples.items()}


def render(results: dict) -> str:
    machine = results["machine"]
    lines = [f"# ONNX Runtime int8 settings on {machine['cpu']} ({', '.join(machine['cpu_features'] or [])})", "",
             f"Seq {results['seq_len']}, {results['runs']} interleaved rounds, trimmed mean; agreement: start/end "
             f"argmax equal to the fp32 file's on {results['windows']} windows of {results['data']}.", "",
             "| setting | what | ms | vs fp32 | MB | start agree | end agree |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['setting']} | {r['what']} | {r['ms']:.1f} | {r['vs_fp32']:.2f}x | {r['mb']:.1f} | "
              f"{r['start']:.1%} | {r['end']:.1%} |" for r in results["rows"]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, cpu: str) -> None:
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        ax.scatter(r["ms"], min(r["start"], r["end"]) * 100)
        ax.annotate(r["setting"], (r["ms"], min(r["start"], r["end"]) * 100), fontsize=7)
    ax.set_xlabel("ms per window (lower is better)")
    ax.set_ylabel("answer agreement with fp32, % (min of start/end)")
    ax.set_title(f"ONNX Runtime int8 settings, {cpu}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

