"""results.json, schema v1, and the latency statistics in it: one file holds every measurement, from this
host and from phones.

`bench` writes host rows, `mobile_harness` adds device rows with `merge_results`, and the report reads
both. A record is one model measured in one runtime, precision, sequence length, mode and thread count.
Both stages summarise their timed runs with `latency_stats`, so a phone's p90 means what the host's does.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
from pathlib import Path

import numpy as np

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import read_json, write_json
from pocketbert.manifest import tool_versions

RESULTS_SCHEMA = "pocketbert.results/1"
RESULTS_NAME = "results.json"
# Ratios and efficiency use the mean of the middle 80% of runs (as ExecuTorch's benchmark apps report):
# a few stalled runs on a shared CPU move the plain mean, not this.
RATIO_STATISTIC = "trimmed_mean"
STATUSES = ("ok", "not_measurable", "failed")
ROLES = ("candidate", "baseline")
# A checkpoint measured in PyTorch eager is recorded like one more format with its own runtime.
EAGER_FORMAT, EAGER_RUNTIME = "pytorch", "pytorch-eager"
MODES = ("model", "e2e")  # the model call alone; end-to-end QA (tokenise + model + decode the span)
TRIM_FRACTION = 0.1  # the trimmed mean keeps the middle 80%, as the ExecuTorch benchmark apps report

# peak_rss_bytes is the whole measuring process's peak after load + first inference; import_rss_bytes is
# that process's RSS once the runtime is imported, before the model loads (their difference is the model's).
# Every record carries every key, so readers never need .get() guesses; None means "not measured".
RECORD_DEFAULTS = {
    "model": None, "role": "candidate", "artifact": None, "format": None, "runtime": None, "backend": None,
    # What the model is for (pocketbert/tasks.py); results from before tasks existed were all question-answering.
    "task": "question-answering",
    "precision": "fp32", "seq_len": None, "mode": "model", "threads": None, "device": None,
    "random_weights": False, "parameters": None, "file_bytes": None, "gzip_bytes": None,
    "peak_rss_bytes": None, "import_rss_bytes": None, "load_ms": None, "first_ms": None, "latency_ms": None, "flops": None,
    "efficiency": None, "status": "ok", "reason": None,
    # The runtime settings the row ran with (the manifest's, as pocketbert/sessions.py applied them) and threads.
    "runtime_settings": None,
}
# Two records with equal values here measure the same thing; a merge keeps the newer one.
IDENTITY_KEYS = ("model", "role", "artifact", "format", "runtime", "backend", "precision", "seq_len", "mode", "threads")
# A baseline is comparable with a candidate when it ran the same task on the same device, runtime and precision.
COMPARABLE_KEYS = ("task", "runtime", "backend", "precision", "seq_len", "mode", "threads")


# --- latency statistics over timed runs (warm-up runs already discarded by the caller) --------------------

def trimmed_mean(samples, trim: float = TRIM_FRACTION) -> float:
    """Mean after dropping floor(trim * n) samples from each end (all kept when that is 0)."""
    values = np.sort(np.asarray(samples, dtype=np.float64))
    cut = math.floor(trim * len(values))
    return float(values[cut:len(values) - cut].mean())


def latency_stats(samples_ms, warmup: int = 0) -> dict:
    """mean, p50, p90, p99 (linear interpolation between order statistics), trimmed mean, min, max, n."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise PocketbertError("no timed runs to summarise; pass --runs 1 or more")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "trimmed_mean": trimmed_mean(values), "min": float(values.min()), "max": float(values.max()),
            "n": int(values.size), "warmup": int(warmup)}


# --- records and results files ----------------------------------------------------------------------

def make_record(**fields) -> dict:
    """A complete record: unknown keys are refused (typos would silently drop figures)."""
    unknown = sorted(set(fields) - set(RECORD_DEFAULTS))
    if unknown:
        raise PocketbertError(f"result record fields {unknown} are not in {RESULTS_SCHEMA}; use {sorted(RECORD_DEFAULTS)}")
    record = {**RECORD_DEFAULTS, **fields}
    if record["status"] not in STATUSES:
        raise PocketbertError(f"result status '{record['status']}' is not one of {', '.join(STATUSES)}")
    if record["role"] not in ROLES:
        raise PocketbertError(f"result role '{record['role']}' is not one of {', '.join(ROLES)}")
    if record["mode"] not in MODES:
        raise PocketbertError(f"result mode '{record['mode']}' is not one of {', '.join(MODES)}")
    return record


# The instruction sets that decide which GEMM kernels a runtime can pick: x86 (fp32 AVX2/AVX-512, int8 VNNI,
# bf16 and AMX tiles) and Arm (dot product, int8 matrix multiply, bf16, SVE).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
                "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")


def cpu_features(cpuinfo: str | None = None) -> list[str] | None:
    """Which of CPU_FEATURES this CPU has, from /proc/cpuinfo's "flags" (x86) or "Features" (Arm) line; None
    where that cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            present = set(value.split())
            return [feature for feature in CPU_FEATURES if feature in present]
    return None


def machine_info() -> dict:
    """The host: CPU model, cores, memory, OS, Python — what a reader needs to judge a timing."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"cpu": cpu, "cpu_features": cpu_features(), "cores": os.cpu_count(), "affinity_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None, "memory_bytes": memory,
            "os": platform.platform(), "python": platform.python_version()}


def new_results(settings: dict, records: list[dict]) -> dict:
    """A fresh results document: the records (normalised by make_record) with the settings, machine and tool
    versions they were measured under."""
    return {
        "schema": RESULTS_SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": tool_versions(),
        "settings": settings,
        "records": [make_record(**r) for r in records],
    }


def load_results(path: str | Path) -> dict:
    """A results.json (or the one in a bench output folder), its records normalised; a file of another schema is
    refused in one line, so old results are re-measured rather than misread."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    results = read_json(path, "results file")
    if not isinstance(results, dict) or results.get("schema") != RESULTS_SCHEMA:
        got = results.get("schema") if isinstance(results, dict) else type(results).__name__
        raise PocketbertError(f"'{path}' has schema {got!r}, expected {RESULTS_SCHEMA}; re-run `pocketbert bench`")
    results["records"] = [make_record(**r) for r in results.get("records", [])]
    return results


def save_results(path: str | Path, results: dict) -> Path:
    """Write `results` to `path` (results.json inside it when it is a folder), atomically; returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    return write_json(path, results)


def record_identity(record: dict) -> tuple:
    """What makes two records the same measurement (model, runtime, precision, length, mode, threads, device):
    the key on which merged results replace an older record."""
    device = record.get("device") or {}
    return tuple(record.get(k) for k in IDENTITY_KEYS) + (device.get("target"), device.get("model"))


def merge_results(base: dict, extra: dict) -> dict:
    """`base` with `extra`'s records joined in (a repeated measurement replaces the older one).

    The machine, versions and settings of `extra` are kept under "merged" so device rows keep their
    provenance; eval entries are concatenated the same way.
    """
    for name, results in (("base", base), ("extra", extra)):
        if results.get("schema") != RESULTS_SCHEMA:
            raise PocketbertError(f"the {name} results have schema {results.get('schema')!r}, expected {RESULTS_SCHEMA}")
    records = {record_identity(r): r for r in base["records"]}
    for record in extra["records"]:
        records[record_identity(record)] = make_record(**record)
    merged = {**base, "records": list(records.values())}
    merged["merged"] = list(base.get("merged", [])) + [
        {k: extra.get(k) for k in ("created", "machine", "versions", "settings")}, *extra.get("merged", [])]
    if base.get("eval") or extra.get("eval"):
        merged["eval"] = list(base.get("eval", [])) + list(extra.get("eval", []))
    return merged


def _device_key(record: dict) -> tuple:
    device = record.get("device") or {}
    return device.get("target"), device.get("model"), device.get("soc")


def latency_of(record: dict, statistic: str = RATIO_STATISTIC) -> float | None:
    """The record's latency in ms by `statistic` (the trimmed mean by default), or None where it was not timed."""
    latency = record.get("latency_ms") or {}
    return latency.get(statistic)


def comparison(candidate: dict, baseline: dict, statistic: str = RATIO_STATISTIC) -> dict:
    """Size and speed ratios of a candidate against a baseline, with the paper's wording."""
    if latency_of(candidate, statistic) is None or latency_of(baseline, statistic) is None:
        statistic = "mean"  # some device tools report only an average (TFLite's benchmark_model)
    size = speed = None
    if candidate.get("file_bytes") and baseline.get("file_bytes"):
        size = baseline["file_bytes"] / candidate["file_bytes"]
    fast, slow = latency_of(candidate, statistic), latency_of(baseline, statistic)
    if fast and slow:
        speed = slow / fast
    words = []
    if size is not None:
        words.append(f"{100 * (1 - 1 / size):.0f}% smaller" if size >= 1 else f"{100 * (1 / size - 1):.0f}% larger")
    if speed is not None:
        words.append(f"{speed:.1f}x faster" if speed >= 1 else f"{1 / speed:.1f}x slower")
    return {"candidate": candidate["model"], "baseline": baseline["model"], "runtime": candidate["runtime"],
            "precision": candidate["precision"], "seq_len": candidate["seq_len"], "mode": candidate["mode"],
            "threads": candidate["threads"], "device": candidate.get("device"), "statistic": statistic,
            "size_ratio": size, "speedup": speed, "words": ", ".join(words) or "not comparable"}


def timing_is_real(record: dict) -> bool:
    """False for a row from an emulated device (device.emulated, e.g. the qemu arm64 board): its output
    checks count, its timings are not latencies and stay out of every ratio, table figure and plot."""
    return not (record.get("device") or {}).get("emulated")


def baseline_ratios(records: list[dict], statistic: str = RATIO_STATISTIC) -> list[dict]:
    """Each measured candidate against the baseline measured on the same device, runtime and precision."""
    baselines: dict[tuple, dict] = {}
    for r in records:
        if r["role"] == "baseline" and r["status"] == "ok" and timing_is_real(r):
            baselines.setdefault((_device_key(r), *(r[k] for k in COMPARABLE_KEYS)), r)
    out = []
    for r in records:
        if r["role"] != "candidate" or r["status"] != "ok" or not timing_is_real(r):
            continue
        baseline = baselines.get((_device_key(r), *(r[k] for k in COMPARABLE_KEYS)))
        if baseline is not None:
            out.append(comparison(r, baseline, statistic))
    return out


def reference_ratios(records: list[dict], statistic: str = RATIO_STATISTIC) -> list[dict]:
    """Each measured candidate against the baseline's fp32 PyTorch eager row of the same task on this host (the 6x
    goal)."""
    references: dict[tuple, dict] = {}
    for r in records:
        if (r["role"] == "baseline" and r["status"] == "ok" and r["format"] == EAGER_FORMAT
                and r["precision"] == "fp32" and r["device"] is None):
            references.setdefault((r["task"], r["seq_len"], r["mode"], r["threads"]), r)
    return [comparison(r, references[key], statistic) for r in records
            if r["role"] == "candidate" and r["status"] == "ok" and timing_is_real(r)
            and (key := (r["task"], r["seq_len"], r["mode"], r["threads"])) in references]
