"""How fast each runtime multiplies matrices on this CPU: two feed-forward blocks of linear layers, exported and
quantized the way `pocketbert export` exports a model (ONNX Runtime's dynamic int8, ExecuTorch's torchao 8da8w lowered
to XNNPACK, LiteRT's ai-edge-quantizer dynamic int8), timed in its own runtime beside eager PyTorch and torch's GEMM
peaks.

The default layers are two feed-forward blocks of BERT-base and DistilBERT at the benchmark's length (384 tokens,
768 -> 3072 -> 768, twice), the shapes where those models spend most of their time; the output has the hidden width,
so copying it out of a runtime costs little beside the multiplies. Whole-model latency mixes kernels with everything
else a graph does; this separates what a runtime's int8 and fp32 kernels reach from what an export can change.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pocketbert.bench.measure import interleave, measure_peaks
from pocketbert.errors import PocketbertError, first_line, require_module
from pocketbert.export import ONNX_OPSET as OPSET
from pocketbert.export import executorch_set_threads as set_threads
from pocketbert.export import executorch_xnnpack_partitioner as xnnpack_partitioner
from pocketbert.export import onnx_cpu_session as cpu_session
from pocketbert.export import quantize_dynamic_int8_onnx as quantize_dynamic_int8
from pocketbert.export import quantize_weights_executorch as quantize_weights
from pocketbert.export import tflite_quantization_recipe as quantization_recipe
from pocketbert.fsutil import atomic_dir, check_replaceable
from pocketbert.results import latency_stats, machine_info

PRECISIONS = ("fp32", "int8")
# int8 outputs differ from fp32 by the quantization of four layers' weights and activations (2-5% here); more than
# this means a broken kernel.
INT8_RELATIVE_ERROR = 0.15
# Rates come from the fastest call, as torch's peaks are best-of-N: an int8 call is short enough (a few ms) that one
# which wakes a sleeping worker thread late runs up to twice as long (a single ExecuTorch int8 layer: 2.6-5.1 ms here).
RATE_STATISTIC = "min"
SCHEMA = "pocketbert.gemm/1"  # marks its results file, and so the folder, as pocketbert's (fsutil.written_by_pocketbert)
RESULTS_FILE = "gemm.json"  # its own name: the results schema's results.json is bench's and eval's
# Each rate is also given against eager PyTorch fp32 in the same interleaved run: the peaks, measured just before, can
# drift by a third on these shared VMs within minutes, so only rates of one run compare.
REFERENCE = ("pytorch", "fp32")
BLOCKS = 2  # feed-forward blocks (two linear layers each) per call


def feed_forward_layers(inner: int, outer: int, blocks: int = BLOCKS, seed: int = 0):
    """`blocks` x (Linear(inner, outer), Linear(outer, inner)) with no activation between: only matrix multiplies."""
    torch.manual_seed(seed)
    layers = [layer for _ in range(blocks) for layer in (torch.nn.Linear(inner, outer), torch.nn.Linear(outer, inner))]
    return torch.nn.Sequential(*layers).eval()


def onnx_call(layers, precision: str, sample, folder: Path, threads: int):
    fp32_path = folder / "linear.onnx"
    program = torch.onnx.export(layers, (sample,), dynamo=True, opset_version=OPSET, input_names=["x"], output_names=["y"],
                                verbose=False)
    assert program is not None  # dynamo=True always returns the ONNXProgram (None is the legacy exporter's)
    program.save(str(fp32_path))
    path = fp32_path
    if precision == "int8":
        path = folder / "linear_int8.onnx"
        quantize_dynamic_int8(fp32_path, path)
    session, feed = cpu_session(path, threads), {"x": sample.numpy()}
    return lambda: session.run(None, feed)[0]


def executorch_call(layers, precision: str, sample, folder: Path, threads: int):
    exir = require_module("executorch.exir", "executorch")
    if precision == "int8":
        layers = copy.deepcopy(layers)
        quantize_weights(layers, "int8")
    with torch.no_grad():
        exported = torch.export.export(layers, (sample,))
    program = exir.to_edge_transform_and_lower(exported, partitioner=[xnnpack_partitioner()]).to_executorch()
    path = folder / f"linear_{precision}.pte"
    path.write_bytes(program.buffer)
    set_threads(threads)
    method = require_module("executorch.runtime", "executorch").Runtime.get().load_program(path).load_method("forward")
    return lambda: method.execute([sample])[0].numpy()


def litert_call(layers, precision: str, sample, folder: Path, threads: int):
    litert_torch = require_module("litert_torch", "litert-torch")
    interpreter_module = require_module("ai_edge_litert.interpreter", "ai-edge-litert")

    model = bytes(litert_torch.convert(layers, (sample,)).model_content())
    if precision == "int8":
        aeq = require_module("ai_edge_quantizer", "ai-edge-quantizer")
        model = bytes(aeq.quantizer.Quantizer(model, quantization_recipe("int8")).quantize().quantized_model)
    path = folder / f"linear_{precision}.tflite"
    path.write_bytes(model)
    interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner()
    feed = {interpreter.get_signature_list()["serving_default"]["inputs"][0]: sample.numpy()}
    return lambda: next(iter(runner(**feed).values()))


def pytorch_call(layers, precision: str, sample, folder: Path, threads: int):
    """Eager PyTorch, the reference: fp32 as the checkpoint runs, int8 by torch's own dynamic quantization."""
    if precision == "int8":
        with warnings.catch_warnings():  # torch.ao's dynamic quantization is deprecated, and still eager's int8
            warnings.simplefilter("ignore")
            layers = torch.ao.quantization.quantize_dynamic(copy.deepcopy(layers), {torch.nn.Linear}, dtype=torch.qint8)

    def call():
        with torch.no_grad():
            return layers(sample).numpy()

    return call


RUNTIMES = {"pytorch": pytorch_call, "onnxruntime": onnx_call, "executorch": executorch_call, "litert": litert_call}


def measure_gemm_rates(out: str | Path, rows: int = 384, inner: int = 768, outer: int = 3072, threads: int = 2,
                       warmup: int = 10, runs: int = 50, runtimes=tuple(RUNTIMES)) -> dict:
    """Each runtime's fp32 and int8 rate on feed-forward layers (`rows` x `inner` -> `outer` -> `inner`, BLOCKS
    times), the calls interleaved, beside this machine's torch GEMM peaks; writes results.json, report.md and gemm.png
    to `out` and returns the results."""
    least = {"--rows": (rows, 1), "--inner": (inner, 1), "--outer": (outer, 1), "--threads": (threads, 1),
             "--runs": (runs, 1), "--warmup": (warmup, 0)}
    wrong = [f"{name} {value}" for name, (value, low) in least.items() if value < low]
    if wrong:
        raise PocketbertError(f"{', '.join(wrong)}: sizes, threads and runs must be at least 1, --warmup at least 0")
    check_memory(rows, inner, outer)
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise PocketbertError(f"unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}")
    runtimes = (REFERENCE[0],) + tuple(r for r in runtimes if r != REFERENCE[0])  # every run has its reference
    check_replaceable(out, force=True)  # fails now, not after every runtime has run
    torch.set_num_threads(threads)
    layers = feed_forward_layers(inner, outer)
    sample = torch.randn(1, rows, inner)
    with torch.no_grad():
        expected = layers(sample).numpy()
    calls, rows_out = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        cells = [(runtime, precision) for runtime in runtimes for precision in PRECISIONS]
        for runtime, precision in tqdm(cells, desc="export the linear layers", unit="file"):
            name = f"{runtime} {precision}"
            folder = Path(scratch) / name.replace(" ", "-")
            folder.mkdir()
            row = {"runtime": runtime, "precision": precision}
            try:
                call = RUNTIMES[runtime](layers, precision, sample, folder, threads)
                error = relative_error(np.asarray(call()).reshape(expected.shape), expected)
            except Exception as err:  # one runtime that cannot build or run the layers must not sink the others
                rows_out.append({**row, "reason": f"{type(err).__name__}: {first_line(err)}"})
                continue
            if precision == "int8" and error > INT8_RELATIVE_ERROR:
                rows_out.append({**row, "reason": f"int8 output off by {error:.3f} relative to fp32 (above "
                                                  f"{INT8_RELATIVE_ERROR}): not timed"})
                continue
            calls[name] = call
            rows_out.append({**row, "relative_error": error})
        peaks = measure_peaks(threads)  # right before the timed calls: these VMs' speed drifts over minutes
        progress = tqdm(total=len(calls) * (warmup + runs), desc="interleaved GEMM calls", unit="call")
        samples = interleave(calls, warmup, runs, progress)
        progress.close()
    operations = BLOCKS * 2 * (2 * rows * inner * outer)
    for row in rows_out:
        timed = samples.get(f"{row['runtime']} {row['precision']}")
        if isinstance(timed, str):
            row["reason"] = timed
        elif timed is not None:
            latency = latency_stats(timed, warmup)
            row["latency_ms"] = latency
            row["rate"] = operations / (latency[RATE_STATISTIC] / 1000) / 1e9
    reference = next((r["rate"] for r in rows_out if "rate" in r and (r["runtime"], r["precision"]) == REFERENCE), None)
    for row in rows_out:
        if "rate" in row and reference:
            row["vs_reference"] = row["rate"] / reference
    results = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
               "shape": {"rows": rows, "inner": inner, "outer": outer}, "operations": operations, "threads": threads,
               "warmup": warmup, "runs": runs, "statistic": RATE_STATISTIC, "peaks": peaks, "rows": rows_out}
    with atomic_dir(out, force=True) as staged:
        (staged / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        (staged / "report.md").write_text(render(results))
        plot(results, staged / "gemm.png")
    return results


# Copies of the fp32 weights alive at once while a runtime exports and runs the layers: torch's, the exported graph's,
# the quantizer's and the runtime's own (measured at the defaults: the peak RSS is about 4x the weights).
WEIGHT_COPIES = 4


def gemm_memory_bytes(rows: int, inner: int, outer: int) -> int:
    """Roughly the most memory a gemm run holds: WEIGHT_COPIES copies of the fp32 weights plus the activations."""
    weights = BLOCKS * 2 * (inner * outer + max(inner, outer)) * 4
    activations = 4 * rows * (inner + outer) * 4
    return WEIGHT_COPIES * weights + activations


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (what can be used without swapping), else physical memory, else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(rows: int, inner: int, outer: int, available: int | None = None) -> None:
    """One line, before any layer is built, when the shapes need more memory than this machine has free (the OOM
    killer would otherwise end the run after minutes, with no message)."""
    available = available_memory_bytes() if available is None else available
    needed = gemm_memory_bytes(rows, inner, outer)
    if available is not None and needed > available:
        raise PocketbertError(f"--rows {rows} --inner {inner} --outer {outer} need about {needed / 1e9:,.1f} GB "
                              f"({WEIGHT_COPIES} copies of {BLOCKS * 2} fp32 weight matrices while exporting), but "
                              f"this machine has {available / 1e9:,.1f} GB available; pass smaller sizes")


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def unit(precision: str) -> str:
    return "GOP/s" if precision == "int8" else "GFLOP/s"


def vs_reference(row: dict) -> str:
    return f"{row['vs_reference']:.2f}x" if "vs_reference" in row else "-"


def render(results: dict) -> str:
    shape, peaks, machine = results["shape"], results["peaks"], results["machine"]
    lines = [
        "# GEMM rate per runtime", "",
        f"Created {results['created']} on {machine['cpu']} ({machine.get('cores', '?')} cores; instruction sets: "
        f"{' '.join(machine.get('cpu_features') or []) or 'not read'}). {BLOCKS} feed-forward blocks of linear "
        f"layers, {shape['rows']} x {shape['inner']} -> {shape['outer']} -> {shape['inner']} each, no activation "
        f"({results['operations'] / 1e6:,.1f} M ops a call), {results['threads']} threads, warm-up "
        f"{results['warmup']} + {results['runs']} runs, the calls interleaved. Rates from the fastest call, as "
        f"torch's peaks are best of several; ms: fastest / median. torch's GEMM peaks (square GEMMs up to 2048), "
        f"measured just before the timed calls: fp32 {peaks['fp32']:,.1f} GFLOP/s, int8 {peaks['int8']:,.1f} GOP/s "
        f"(the faster of fbgemm and oneDNN). Compare rates of one run only.", "",
        "| runtime | precision | ms | rate | vs PyTorch eager fp32 (same run) | max error vs fp32 torch (relative) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        if "rate" in row:
            lines.append(f"| {row['runtime']} | {row['precision']} | {row['latency_ms']['min']:.2f} / "
                         f"{row['latency_ms']['p50']:.2f} | {row['rate']:,.0f} {unit(row['precision'])} | "
                         f"{vs_reference(row)} | {row['relative_error']:.1e} |")
        else:
            lines.append(f"| {row['runtime']} | {row['precision']} | not measured: {row['reason']} | | | |")
    lines += ["", "![GEMM rates](gemm.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    fig, axes = plt.subplots(1, len(PRECISIONS), figsize=(9, 3))
    for ax, precision in zip(axes, PRECISIONS):
        measured = [r for r in results["rows"] if r["precision"] == precision and "rate" in r]
        ax.bar([r["runtime"] for r in measured], [r["rate"] for r in measured])
        ax.axhline(results["peaks"][precision], color="black", linestyle="--", linewidth=1, label="torch peak")
        ax.set_title(f"{precision} ({unit(precision)})", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"Linear layers per runtime, {results['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
