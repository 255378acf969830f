"""Where a model's time goes, per op type, from each runtime's own profiler: ONNX Runtime's session profiler,
ExecuTorch's ETDump (XNNPACK's per-operator times inside the delegate) and torch.profiler for checkpoints in eager
PyTorch. Matrix multiplies (linear layers, attention's batched products, fused attention) are split from every other
op: the other ops are what a faster GEMM kernel cannot shorten. LiteRT's Python interpreter has no profiler, so its
rows say so instead.

Profilers add their own cost: the wall time here runs above `pocketbert bench`'s. Compare shares, and take latencies
from `pocketbert bench`.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from pocketbert.bench.runtimes import Target, open_targets, pytorch_runner, tokenizer_for
from pocketbert.errors import NotRunnableHere, PocketbertError, first_line
from pocketbert.export import format_class, get_format
from pocketbert.fsutil import atomic_dir, check_replaceable
from pocketbert.reference import validation_inputs
from pocketbert.results import EAGER_FORMAT, machine_info
from pocketbert.sessions import applied, settings_of

# Op types that multiply matrices, as ONNX Runtime (MatMul, FusedMatMul, MatMulInteger, DynamicQuantizeMatMul,
# MatMulIntegerToFloat, MatMulNBits, Gemm, Attention), XNNPACK ("Fully Connected ... GEMM", "Batch Matrix Multiply")
# and PyTorch (aten::addmm, aten::mm, aten::bmm, aten::_scaled_dot_product_*_attention*) name them.
MATRIX_OP = re.compile(r"matmul|gemm|attention|fully connected|batch matrix multiply|^aten::(addmm|mm|bmm)$", re.I)
EAGER_PROFILER = "torch.profiler (self CPU time per aten op)"
SCHEMA = "pocketbert.op_profile/1"  # marks its results file, and so the folder, as pocketbert's (fsutil.written_by_pocketbert)
RESULTS_FILE = "op_profile.json"  # its own name: the results schema's results.json is bench's and eval's


def profile_models(specs, out: str | Path, seq_len: int = 384, warmup: int = 3, runs: int = 10,
                   threads: int | None = None, top: int = 10) -> dict:
    """Profile each model (artifact folder, checkpoint folder or preset) on one real QA window of `seq_len` tokens;
    writes results.json, report.md and op_profile.png to `out` and returns the results."""
    if runs < 1 or warmup < 0:
        raise PocketbertError(f"--runs must be at least 1 and --warmup at least 0 (got {runs} and {warmup})")
    check_replaceable(out, force=True)  # a folder that is not ours fails now, not after every profile
    targets = open_targets(specs, sizes=False)
    rows = [profile_target(target, seq_len, warmup, runs, threads)
            for target in tqdm(targets, desc="op-profile", unit="model")]
    results = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
               "seq_len": seq_len, "warmup": warmup, "runs": runs, "threads": threads, "top": top, "rows": rows}
    with atomic_dir(out, force=True) as staged:
        (staged / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        (staged / "report.md").write_text(render(results))
        plot(rows, staged / "op_profile.png", results)
    return results


def profile_target(target: Target, seq_len: int, warmup: int, runs: int, threads: int | None) -> dict:
    row = {"model": target.label, "path": target.path, "runtime": target.runtime, "precision": target.precision,
           "backend": target.backend,
           "runtime_settings": applied(settings_of(target.manifest), threads) if target.manifest else None}
    if not target.supports(seq_len):
        return {**row, "reason": f"the artifact does not take length {seq_len}"}
    try:
        profile = (eager_profile(target, seq_len, warmup, runs, threads) if target.format == EAGER_FORMAT
                   else artifact_profile(target, seq_len, warmup, runs, threads))
    except NotRunnableHere as reason:
        return {**row, "reason": str(reason)}
    except PocketbertError:
        raise
    except Exception as err:  # a runtime failing on one model must not sink the others' profiles
        return {**row, "reason": f"failed: {first_line(err)}"}
    ops = dict(sorted(profile["ops"].items(), key=lambda item: -item[1]))
    matrix = sum(ms for op, ms in ops.items() if MATRIX_OP.search(op))
    other = sum(ops.values()) - matrix
    return {**row, "profiler": profile["profiler"], "wall_ms": profile["wall_ms"], "matrix_ms": matrix,
            "other_ms": other, "outside_ops_ms": max(profile["wall_ms"] - matrix - other, 0.0), "ops_ms": ops}


def one_window(target: Target, input_names, seq_len: int) -> dict:
    """The first real validation input of the target's task (a QA window, or a text), `seq_len` tokens, as
    {input name: int64 [1, seq_len]}."""
    windows = validation_inputs(tokenizer_for(target), input_names, seq_len, target.task)
    return {name: windows[name][:1] for name in input_names}


def artifact_profile(target: Target, seq_len: int, warmup: int, runs: int, threads: int | None) -> dict:
    why_not = format_class(target.format).why_not_runnable_here(target.backend)
    if why_not:
        raise NotRunnableHere(why_not)
    manifest = target.manifest
    feed = one_window(target, [i["name"] for i in manifest["inputs"]], seq_len)
    path = Path(target.path) / manifest["artifact"]
    return get_format(target.format).profile_ops(path, manifest, feed, warmup, runs, threads)


def eager_profile(target: Target, seq_len: int, warmup: int, runs: int, threads: int | None) -> dict:
    runner = pytorch_runner(target.path, threads)
    feed = one_window(target, runner.input_names, seq_len)
    for _ in range(warmup):
        runner(feed)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(runs):
            runner(feed)
        wall_ms = (time.perf_counter() - start) * 1000 / runs
    ops: Counter[str] = Counter()
    for event in profiler.key_averages():
        ops[event.key] += event.self_cpu_time_total / 1000 / runs  # microseconds, over all runs
    return {"ops": {op: ms for op, ms in ops.items() if ms > 0}, "wall_ms": wall_ms, "profiler": EAGER_PROFILER}


def _share(part: float, whole: float) -> str:
    return f"{part:.1f} ({part / whole:.0%})" if whole else f"{part:.1f}"


def render(results: dict) -> str:
    machine = results["machine"]
    lines = [f"# Where the time goes: per-op profiles on {machine['cpu']} "
             f"({', '.join(machine.get('cpu_features') or []) or 'instruction sets not read'})", "",
             f"Created {results['created']}. One real QA window of {results['seq_len']} tokens, {results['warmup']} "
             f"warm-up + {results['runs']} profiled calls, {results['threads'] or 'default'} threads. Each runtime's "
             "own profiler (named below); profiling adds cost, so take latencies from `pocketbert bench` and compare "
             "shares here. Matrix multiplies are linear layers, attention's batched products and fused attention; "
             "outside ops is the call's time that no op accounts for (the runtime's own work between ops).", "",
             "| model | runtime | precision | profiled ms per call | matrix multiplies ms | other ops ms | "
             "outside ops ms | largest other ops |", "|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        if "reason" in row:
            lines.append(f"| {row['model']} | {row['runtime']} | {row['precision']} | not profiled: {row['reason']} "
                         "| | | | |")
            continue
        wall = row["wall_ms"]
        largest = [f"{op} {ms:.1f}" for op, ms in row["ops_ms"].items() if not MATRIX_OP.search(op)][:3]
        lines.append(f"| {row['model']} | {row['runtime']} | {row['precision']} | {wall:.1f} | "
                     f"{_share(row['matrix_ms'], wall)} | {_share(row['other_ms'], wall)} | "
                     f"{_share(row['outside_ops_ms'], wall)} | {', '.join(largest)} |")
    for row in results["rows"]:
        if "reason" in row:
            continue
        lines += ["", f"## {row['model']} ({row['runtime']}, {row['precision']})", "", f"Profiler: {row['profiler']}.",
                  "", "| op type | ms per call | share | matrix multiply |", "|---|---|---|---|"]
        lines += [f"| {op} | {ms:.2f} | {ms / row['wall_ms']:.1%} | {'yes' if MATRIX_OP.search(op) else ''} |"
                  for op, ms in list(row["ops_ms"].items())[:results["top"]]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, results: dict) -> None:
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    profiled = [r for r in rows if "reason" not in r]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * max(len(profiled), 1)))
    labels = [f"{r['model']} ({r['runtime']}, {r['precision']})" for r in profiled]
    left = [0.0] * len(profiled)
    for key, name in (("matrix_ms", "matrix multiplies"), ("other_ms", "other ops"), ("outside_ops_ms", "outside ops")):
        values = [r[key] for r in profiled]
        ax.barh(labels, values, left=left, label=name)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel(f"ms per call at {results['seq_len']} tokens (profiled)")
    ax.set_title(f"Where the time goes, {results['machine']['cpu']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
