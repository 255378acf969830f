"""report.md and PNG plots from a results.json: what a person reads to compare models."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pocketbert.fsutil import atomic_write_text
from pocketbert.results import RATIO_STATISTIC, baseline_ratios, reference_ratios, timing_is_real

MB = 1e6
INT8_PRECISIONS = ("int8", "int8-static")  # int8 weights; dynamic or statically calibrated int8 activations


@dataclass(frozen=True)
class Goals:
    """The targets the report's "Goals" section judges measurements against (`pocketbert bench --goal-*`).

    The defaults are the project's goals: the DistilBERT paper's 1.9x over BERT-base at 384 tokens, MobileBERT-
    class 6x faster and 6x smaller for the best int8 artifact against BERT-base in fp32 PyTorch eager, and fp32
    within 1.5x of the FLOP bound (encoder FLOPs at the measured GEMM peak).
    """

    distil_speedup: float = 1.9
    mobile_speedup: float = 6.0
    mobile_shrink: float = 6.0
    flop_bound: float = 1.5
    seq_len: int = 384  # the length every goal is judged at (shorter sequences flatter int8 more)


def _fmt(value, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:,.{digits}f}"


def _device(record: dict) -> str:
    device = record.get("device")
    return "this host" if not device else " ".join(str(device.get(k)) for k in ("target", "model") if device.get(k))


def _peaks(settings: dict) -> str:
    """"fp32 95.1, bf16 3.2 GFLOP/s, int8 180.4 GOP/s"; older results hold only the fp32 peak."""
    peaks = settings.get("peak_gflops_by_precision") or {"fp32": settings.get("peak_matmul_gflops")}
    return ", ".join(f"{precision} {_fmt(value)} {'GOP/s' if precision == 'int8' else 'GFLOP/s'}"
                     for precision, value in peaks.items())


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table of `rows` under `header`, cells as str()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _label(record: dict) -> str:
    return record["model"] + (" *(random weights)*" if record["random_weights"] and "random" not in record["model"] else "")


def render_report(results: dict, plots: Sequence[str] = ()) -> str:
    """report.md's text for a results document: settings, machine, the tables and ratios against the baseline, and
    links to `plots` (file names beside the report)."""
    records = results["records"]
    settings = results.get("settings", {})
    machine = results.get("machine", {})
    ok = [r for r in records if r["status"] == "ok" and r["latency_ms"] and timing_is_real(r)]
    main_lens = settings.get("seq_lens") or sorted({r["seq_len"] for r in ok if r["seq_len"]})
    tasks = sorted({r["task"] for r in records}) or [settings.get("task") or "question-answering"]
    parts = [
        "# pocketbert benchmark",
        f"Created {results.get('created')} on {machine.get('cpu')} ({machine.get('cores')} cores, "
        f"{_fmt(machine.get('memory_bytes'), 1, 1e9)} GB, {machine.get('os')}, Python {machine.get('python')}; "
        f"instruction sets: {' '.join(machine.get('cpu_features') or []) or 'not read'}). "
        f"Warm-up {settings.get('warmup')} + {settings.get('runs')} runs, {settings.get('threads')} threads, models "
        f"interleaved A B A B; GEMM peaks {_peaks(settings)}. Latencies in ms; "
        f"ratios and efficiency use the {settings.get('statistic_for_ratios', RATIO_STATISTIC).replace('_', ' ')} "
        "(middle 80% of runs). Timings on a shared machine are noisy: compare rows of the same run only. "
        f"Task: {', '.join(tasks)} (candidates are compared only with a baseline of the same task and head).",
    ]

    sized: dict[tuple, dict] = {}
    for r in records:
        sized.setdefault((r["model"], r["format"], r["precision"], _device(r)), r)
    firsts = {(r["model"], _device(r)): r for r in records if r["load_ms"] is not None}
    parts += ["## Size and start-up", markdown_table(
        ["model", "format", "precision", "device", "parameters", "file MB", "gzip MB", "peak RSS MB",
         "RSS over runtime MB", "load ms", "first inference ms"],
        [[_label(r), r["format"], r["precision"], d, _fmt(r["parameters"], 0), _fmt(r["file_bytes"], 1, MB),
          _fmt(r["gzip_bytes"], 1, MB), _fmt(f.get("peak_rss_bytes"), 0, MB),
          _fmt(f["peak_rss_bytes"] - f["import_rss_bytes"], 0, MB) if f.get("import_rss_bytes") else "-",
          _fmt(f.get("load_ms")), _fmt(f.get("first_ms"))]
         for (model, _, _, d), r in sized.items() for f in [firsts.get((model, d), {})]])]

    latency_rows = [[_label(r), r["runtime"], r["backend"] or "-", r["precision"], _device(r), r["mode"], r["seq_len"],
                     r["threads"], *(_fmt(r["latency_ms"][k], 2) for k in ("mean", "p50", "p90", "p99", "trimmed_mean")),
                     r["latency_ms"]["n"]]
                    for r in ok if r["seq_len"] in main_lens]
    parts += ["## Latency", markdown_table(["model", "runtime", "backend", "precision", "device", "mode", "seq", "threads",
                                    "mean", "p50", "p90", "p99", "trimmed mean", "n"], latency_rows)]

    same = baseline_ratios(records)
    parts += ["## Against the baseline (same device, runtime and precision)",
              markdown_table(["candidate", "baseline", "runtime", "precision", "device", "mode", "seq", "result"],
                     [[c["candidate"], c["baseline"], c["runtime"], c["precision"], _device(c), c["mode"], c["seq_len"],
                       c["words"]] for c in same]) if same else "No candidate has a baseline measured alike."]
    reference = reference_ratios(records)
    if reference:
        parts += ["## Against the baseline in fp32 PyTorch eager on this host",
                  markdown_table(["candidate", "runtime", "precision", "device", "mode", "seq", "result"],
                         [[c["candidate"], c["runtime"], c["precision"], _device(c), c["mode"], c["seq_len"], c["words"]]
                          for c in reference])]

    sweep_lens = sorted({r["seq_len"] for r in ok if r["mode"] == "model"})
    if len(sweep_lens) > 1:
        by_model: dict[tuple, dict[int, dict]] = {}
        for r in ok:
            if r["mode"] == "model":
                by_model.setdefault((r["model"], r["runtime"], r["precision"], _device(r)), {})[r["seq_len"]] = r
        parts += ["## Sequence-length sweep (model only): trimmed-mean ms / efficiency (share of the GEMM peak "
                  "of the model's own precision)",
                  markdown_table(["model", "runtime", "precision", "device", *map(str, sweep_lens)],
                         [[m, rt, p, d, *(f"{_fmt(row[n]['latency_ms'][RATIO_STATISTIC], 2)} / "
                                          f"{_fmt(row[n]['efficiency'] and 100 * row[n]['efficiency'], 0)}%"
                                          if n in row else "-" for n in sweep_lens)]
                          for (m, rt, p, d), row in by_model.items()])]

    emulated = [r for r in records if not timing_is_real(r)]
    if emulated:
        parts += ["## Emulated devices: output checks only (their timings are not latencies)",
                  markdown_table(["model", "runtime", "precision", "seq", "device", "emulated core", "CPU features", "status"],
                         [[_label(r), r["runtime"], r["precision"], r["seq_len"], _device(r),
                           r["device"]["emulated"].get("cpu"), " ".join(r["device"].get("cpu_features") or []) or "-",
                           r["status"]] for r in emulated])]
    parts += ["## Goals", _goals(records, same, reference, Goals(**settings.get("goals", {})))]
    for title, table in eval_tables(results.get("eval") or []):
        parts += [f"## Accuracy ({title})", table]
    missing = [r for r in records if r["status"] != "ok"]
    if missing:
        parts += ["## Not measured", markdown_table(["model", "runtime", "precision", "seq", "mode", "status", "reason"],
                                            [[r["model"], r["runtime"], r["precision"], r["seq_len"] or "-", r["mode"],
                                              r["status"], (r["reason"] or "").replace("|", "/")] for r in missing])]
    if plots:
        parts += ["## Plots", "\n".join(f"![{Path(p).stem}]({p})" for p in plots)]
    return "\n\n".join(parts) + "\n"


def _goals(records, same, reference, goals: Goals) -> str:
    lines, n = [], goals.seq_len
    distil = [c for c in same if c["precision"] == "fp32" and c["seq_len"] == n and c["mode"] == "model" and c["speedup"]]
    for c in distil:
        verdict = "meets" if c["speedup"] >= goals.distil_speedup else "misses"
        lines.append(f"- {c['candidate']} vs {c['baseline']}, {c['runtime']} fp32 seq {n}: {c['speedup']:.2f}x faster "
                     f"({verdict} the {goals.distil_speedup}x goal)")
    int8 = [c for c in reference if c["precision"] in INT8_PRECISIONS and c["mode"] == "model"
            and c["seq_len"] == n and c["speedup"]]
    if int8:
        best = max(int8, key=lambda c: c["speedup"])
        fast, small = best["speedup"] >= goals.mobile_speedup, (best["size_ratio"] or 0) >= goals.mobile_shrink
        lines.append(f"- best int8 artifact {best['candidate']} ({best['runtime']}, seq {best['seq_len']}) vs the "
                     f"baseline fp32 PyTorch eager: {best['speedup']:.1f}x faster, {_fmt(best['size_ratio'])}x smaller "
                     f"({'meets' if fast and small else 'misses'} the {goals.mobile_speedup:g}x/"
                     f"{goals.mobile_shrink:g}x goal)")
    for r in records:
        if r["status"] == "ok" and r["precision"] == "fp32" and r["efficiency"] and r["seq_len"] == n \
                and r["mode"] == "model" and timing_is_real(r):
            bound = 1 / r["efficiency"]
            lines.append(f"- {r['model']} {r['runtime']} fp32 seq {n}: {bound:.2f}x the FLOP bound "
                         f"({'meets' if bound <= goals.flop_bound else 'misses'} the {goals.flop_bound}x goal)")
    return "\n".join(lines) or f"No measurement matches a goal's conditions (fp32 / int8 at seq {n} with a baseline)."


def eval_tables(entries: list[dict]) -> list[tuple[str, str]]:
    """(title, Markdown table) per task among eval entries: the task's metrics beside PyTorch's, the headline metric
    kept (F1, accuracy) and the MLPerf int8 verdict; columns from each task's TaskEval (bench/task_eval.py)."""
    from pocketbert.bench.task_eval import by_task  # lazy: `pocketbert --help` imports this module

    return [(evaluation.title, markdown_table(evaluation.table_header(), [evaluation.table_row(e) for e in group]))
            for evaluation, group in by_task(entries)]


def render_eval_table(entries: list[dict]) -> str:
    """The accuracy table(s) of eval entries (see eval_tables), one per task, each under its task's title when the
    entries hold more than one task."""
    tables = eval_tables(entries)
    if len(tables) == 1:
        return tables[0][1]
    return "\n\n".join(f"### {title}\n\n{table}" for title, table in tables)


def write_plots(results: dict, out: Path) -> list[str]:
    """Write the latency, size and length-sweep PNGs that the results have data for into `out`; returns their file
    names, for the report to link."""
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    records = [r for r in results["records"] if r["status"] == "ok" and r["latency_ms"] and not r["device"]]
    main_lens = results.get("settings", {}).get("seq_lens") or []
    written = []
    main = [r for r in records if r["mode"] == "model" and r["seq_len"] in main_lens[:1]]
    if main:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(main) + 1.5))
        labels = [f"{r['model']} [{r['runtime']}/{r['precision']}]" for r in main]
        # Median bar with a p90 whisker: the mean can sit above p90 when a few runs stall, p50 cannot.
        ax.barh(labels, [r["latency_ms"]["p50"] for r in main],
                xerr=[[0] * len(main), [r["latency_ms"]["p90"] - r["latency_ms"]["p50"] for r in main]],
                color=["tab:gray" if r["role"] == "baseline" else "tab:blue" for r in main])
        ax.set_xlabel(f"median ms (whisker: p90), seq {main_lens[0]}, model only")
        ax.set_title("Latency: candidates (blue) vs baseline (grey)")
        written.append(save_figure(fig, out / "latency.png"))
    sized: dict[tuple, dict] = {}
    for r in results["records"]:
        if r["file_bytes"]:
            sized.setdefault((r["model"], r["format"], r["precision"]), r)
    if sized:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(sized) + 1.5))
        labels = [f"{m} [{f}/{p}]" for m, f, p in sized]
        ax.barh(labels, [r["file_bytes"] / MB for r in sized.values()], label="file", color="tab:blue")
        ax.barh(labels, [(r["gzip_bytes"] or 0) / MB for r in sized.values()], label="gzip -6", color="tab:orange",
                height=0.4)
        ax.set_xlabel("MB")
        ax.legend()
        ax.set_title("Artifact size")
        written.append(save_figure(fig, out / "size.png"))
    curves: dict[str, list[dict]] = {}
    for r in records:
        if r["mode"] == "model":
            curves.setdefault(f"{r['model']} [{r['runtime']}/{r['precision']}]", []).append(r)
    if any(len(c) > 1 for c in curves.values()):
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, rows in curves.items():
            rows.sort(key=lambda r: r["seq_len"])
            left.plot([r["seq_len"] for r in rows], [r["latency_ms"][RATIO_STATISTIC] for r in rows], marker="o", label=name)
            if all(r["efficiency"] for r in rows):
                right.plot([r["seq_len"] for r in rows], [100 * r["efficiency"] for r in rows], marker="o", label=name)
        left.set(xlabel="sequence length", ylabel="trimmed-mean latency, ms", title="Sequence sweep")
        right.set(xlabel="sequence length", ylabel="% of the GEMM peak of its precision", title="Efficiency")
        left.legend(fontsize=7)
        written.append(save_figure(fig, out / "sweep.png"))
    return written


def save_figure(fig, path: Path) -> str:
    """Save `fig` as a PNG at `path` atomically (a temporary file renamed), close it, and return the file name."""
    import matplotlib.pyplot as plt  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path.name


def write_report(results: dict, out: str | Path) -> Path:
    """Write the plots and report.md for `results` into `out`; returns the report's path."""
    out = Path(out)
    plots = write_plots(results, out)
    return atomic_write_text(out / "report.md", render_report(results, plots))
