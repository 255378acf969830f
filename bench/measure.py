"""The harness behind `pocketbert bench`: sizes, load/first-inference/RSS per model, interleaved latency.

Method, so the figures can be judged:
- Load time, first inference and peak RSS come from a fresh subprocess per model (`python -m
  pocketbert.bench.measure PROBE_JSON`): a model loaded earlier in the same process cannot hide in its RSS
  or warm its caches.
- Latency loops run in this process with every model loaded, interleaved A B A B ... (warm-up included),
  so a noisy neighbour slows all models alike instead of whichever ran during the noise.
- Efficiency is encoder FLOPs / latency over this machine's GEMM peak in the artifact's own precision
  (fp32, bf16 or int8), each measured at the same thread count: an int8 model is judged against int8 kernels.
- One run compares models of one task (pocketbert/tasks.py), each timed on that task's real inputs
  (pocketbert/reference.py: a question/context window, or a text), against a baseline with the same head: the
  preset bert-base is built as a *ForQuestionAnswering, or a *ForSequenceClassification with the classifier's labels.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pocketbert.bench.report import Goals, write_report
from pocketbert.bench.runtimes import Target, encoder_flops, load_timed_runner, open_target, open_targets, tokenizer_for
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.export import export_model, format_names
from pocketbert.fsutil import atomic_dir, new_output_folder
from pocketbert.manifest import MANIFEST_NAME, artifact_verification, read_manifest, verification_env
from pocketbert.modeling import PRESETS, load_model
from pocketbert.qa import QAExample, QAWindow, decode_answers, prepare_features
from pocketbert.reference import text_rows, validation_inputs
from pocketbert.results import (
    EAGER_FORMAT,
    MODES,
    RATIO_STATISTIC,
    RESULTS_NAME,
    latency_stats,
    load_results,
    make_record,
    merge_results,
    new_results,
    save_results,
)
from pocketbert.sessions import applied, settings_of
from pocketbert.tasks import QUESTION_ANSWERING, TEXT_CLASSIFICATION, Task

DEFAULT_BASELINE = "bert-base"
BASELINE_CACHE = "baseline-cache"
MATMUL_SIZE = 2048
PEAK_PRECISIONS = ("fp32", "bf16", "int8")
INTEGER_GEMM_PRECISIONS = {"int8-static": "int8", "int4": "int8"}
INT8_ENGINES = ("fbgemm", "onednn")  # torch's quantized engines whose best int8 GEMM is the int8 peak

# End-to-end mode answers one real question (tokenise, run, decode the span), or for a classifier labels one real
# text, the same question's context (tokenise, run, pick the label).
E2E_EXAMPLE = QAExample(
    "e2e", "When did the bridge reopen to traffic?",
    "The old stone bridge over the river Ouse was closed in the spring of 2019 after engineers found deep "
    "cracks in two of its arches. Repairs took longer than planned because the original quarry had closed "
    "decades earlier and matching limestone had to be cut in Yorkshire. The bridge finally reopened to traffic "
    "on 14 September 2021, with a weight limit of seven tonnes and a new footpath on its eastern side. Local "
    "traders said the closure had cost them a third of their passing trade, and the council promised to review "
    "parking charges in the town centre for the following year.",
)


E2E_TEXT = E2E_EXAMPLE.context


def model_inputs(tokenizer, input_names, length: int, task: Task = QUESTION_ANSWERING) -> dict[str, np.ndarray]:
    """The task's first real validation input (a question/context window, or a text), padded to `length`:
    {name: int64 [1, length]}."""
    return {name: array[:1] for name, array in validation_inputs(tokenizer, input_names, length, task).items()}


def timed_call(runner, tokenizer, mode: str, length: int, task: Task = QUESTION_ANSWERING):
    """A no-argument function doing one model call (mode "model") or one full use of the model (mode "e2e": a QA
    answer decoded from its span, or a classifier's label and its probability)."""
    if mode == "model":
        inputs = model_inputs(tokenizer, runner.input_names, length, task)
        return lambda: runner(inputs)
    if not task.masked:
        def label():
            logits, = runner(text_rows(tokenizer, [E2E_TEXT], runner.input_names, length))
            scores = np.exp(logits[0] - logits[0].max())
            best = int(scores.argmax())
            return best, float(scores[best] / scores.sum())

        return label

    def answer():
        features = prepare_features(tokenizer, [E2E_EXAMPLE], QAWindow(length))
        start, end = runner({name: features[name] for name in runner.input_names})
        return decode_answers([E2E_EXAMPLE], features, start, end)

    return answer


def peak_matmul_gflops(threads: int, precision: str = "fp32", max_size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s (GOP/s for int8) of a square GEMM in `precision` at `threads` threads.

    fp32 and bf16 are torch.matmul; int8 is a dynamically quantised linear (u8 x s8 -> s32), the int8 GEMM that
    int8 CPU runtimes use, not torch._int_mm's reference loop, in the fastest of torch's quantized engines: fbgemm
    has AVX2 and AVX-512 VNNI kernels, oneDNN also AMX tiles, which on an AMX Xeon ran 1.5-2.3x fbgemm (2026-12-01);
    with fbgemm alone LiteRT's whole int8 model measured above the "peak". It is torch's best, not the CPU's: LiteRT's
    own AMX kernels outran it there (`pocketbert bench gemm`). The size doubles from 256 until one call takes 50 ms
    (or `max_size`), so a precision this CPU only emulates (bf16 without avx512_bf16/AMX) is measured in seconds, not
    minutes.
    """
    torch.set_num_threads(threads)
    if precision == "int8":
        return max(_with_quantized_engine(torch, engine, lambda: _square_gemm_rate(torch, precision, max_size, repeats))
                   for engine in INT8_ENGINES if engine in torch.backends.quantized.supported_engines)
    return _square_gemm_rate(torch, precision, max_size, repeats)


def _with_quantized_engine(torch, engine: str, measure):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        return measure()
    finally:
        torch.backends.quantized.engine = previous


def _square_gemm_rate(torch, precision: str, max_size: int, repeats: int) -> float:
    size = 256
    while True:
        gemm = _gemm(torch, precision, size)
        gemm()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            gemm()
            best = min(best, time.perf_counter() - start)
        if best >= 0.05 or size >= max_size:
            return 2 * size ** 3 / best / 1e9
        size *= 2


def _gemm(torch, precision: str, size: int):
    if precision == "int8":
        with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated, and still the way in
            warnings.simplefilter("ignore")
            weight = torch.quantize_per_tensor(torch.randn(size, size), 0.05, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(weight, None)
        x = torch.randn(size, size)
        return lambda: torch.ops.quantized.linear_dynamic(x, packed)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return lambda: torch.matmul(a, b)


def measure_peaks(threads: int) -> dict[str, float]:
    """This machine's GEMM peak per precision: {"fp32": GFLOP/s, "bf16": GFLOP/s, "int8": GOP/s}."""
    return {precision: peak_matmul_gflops(threads, precision) for precision in PEAK_PRECISIONS}


def peak_precision(precision: str) -> str:
    """The GEMM an artifact's precision computes in: int8 artifacts run int8 kernels, and so do int8-static (int8
    activations) and int4 (4-bit weights times int8 activations in XNNPACK's and ONNX Runtime's kernels); fp16 and
    palettised weights are widened to fp32 on a CPU, and so are a16w8's 16-bit activations (ONNX Runtime computes
    between its QDQ pairs in float; LiteRT's int16 kernels have no faster peak to measure)."""
    return INTEGER_GEMM_PRECISIONS.get(precision, precision if precision in PEAK_PRECISIONS else "fp32")


# --- one model in a fresh process: load time, first inference, RSS --------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """VmHWM, the peak of this process's own memory map. Not ru_maxrss: Linux carries that across exec,
    so a probe would report its parent's (the harness holding every model) size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise PocketbertError("/proc/self/status has no VmHWM; peak RSS is measured on Linux only")


def _import_load_path(target: Target) -> None:
    """Import the runtime and the code that loads it before the RSS reference is taken, so a model's RSS is not
    charged with its runtime's libraries, only with its weights."""
    format_names()  # imports every format module, as loading through the registry does
    for module in (target.runtime_module, "transformers", "pocketbert.export.task"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # loading names the missing package
    if target.format == EAGER_FORMAT:
        # lazy on purpose: resolve transformers' lazy module before the RSS reference, so the model is not charged with it
        import transformers  # lazy: as above

        getattr(transformers, target.task.head)


def probe_in_this_process(path: str, threads: int, seq_len: int) -> dict:
    """Load time, first-call time and RSS (after imports, and peak) of one target, measured in this process: run
    only in a fresh interpreter (`probe`), so nothing loaded before skews the memory numbers."""
    target = open_target(path, sizes=False)
    _import_load_path(target)
    tokenizer = tokenizer_for(target)
    import_rss = _rss_bytes()
    start = time.perf_counter()
    try:
        runner = load_timed_runner(target, threads)
    except NotRunnableHere as reason:
        return {"status": "not_measurable", "reason": str(reason)}
    load_ms = 1000 * (time.perf_counter() - start)
    call = timed_call(runner, tokenizer, "model", seq_len, target.task)
    start = time.perf_counter()
    call()
    first_ms = 1000 * (time.perf_counter() - start)
    return {"status": "ok", "load_ms": load_ms, "first_ms": first_ms, "import_rss_bytes": import_rss,
            "peak_rss_bytes": _peak_rss_bytes(),
            "parameters": runner.info.get("parameters")}


def probe(target: Target, threads: int, seq_len: int) -> dict:
    """Run `probe_in_this_process` in a fresh interpreter; its last stdout line is the JSON answer."""
    request = json.dumps({"path": target.path, "threads": threads, "seq_len": seq_len})
    done = subprocess.run([sys.executable, "-m", "pocketbert.bench.measure", request],
                          capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **verification_env()})
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"probe exited {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


# --- targets, baselines --------------------------------------------------------------------------------

def baseline_targets(baseline: str, candidates: list[Target], cache: Path, export_baseline: bool,
                     lengths: list[int]) -> list[Target]:
    """The baseline in PyTorch eager, and (unless told not to) exported like each candidate artifact, with the
    candidates' head (pocketbert/tasks.py): a preset is built with their task (a classifier's with their label names,
    so the same label count); a checkpoint must have that head already, else one line."""
    head_of = candidates[0]  # run_bench lets only candidates of one head share a baseline (check_one_head)
    random_weights = baseline in PRESETS
    label = f"{baseline} (random weights)" if random_weights else Path(baseline).name
    source = saved_checkpoint(baseline, cache, head_of.task, head_of.labels) if random_weights else baseline
    targets = [open_target(source, "baseline", f"{label} pytorch")]
    if targets[0].head != head_of.head:
        raise PocketbertError(f"baseline '{baseline}' is a {targets[0].head} model but the candidates are "
                              f"{head_of.head}; pass --baseline with a checkpoint of that head, or the preset bert-base")
    targets[0].random_weights = random_weights
    if not export_baseline:
        return targets
    # A preset's QA baseline is exported from the preset itself, as always; any other from the checkpoint timed above.
    exported_from = baseline if random_weights and head_of.task.masked else source
    prefix = "" if head_of.task.masked else f"{_head_slug(head_of)}-"
    wanted: dict[tuple, Target] = {}
    for c in candidates:
        if c.format != EAGER_FORMAT:
            wanted.setdefault((c.format, c.precision, c.backend), c)
    for (format, precision, backend), like in sorted(wanted.items(), key=lambda kv: str(kv[0])):
        folder = _exported_baseline(exported_from, like,
                                    cache / f"{prefix}{format}-{precision}-{backend or 'default'}", lengths)
        target = open_target(folder, "baseline", f"{label} {format}/{precision}")
        target.random_weights = random_weights
        targets.append(target)
    return targets


def _head_slug(target: Target) -> str:
    """The head in a folder name: question-answering, or text-classification-5-labels."""
    return target.task_name + (f"-{len(target.labels)}-labels" if target.labels is not None else "")


def check_one_head(candidates: list[Target], baseline: str | None) -> None:
    """Refuse, in one line, candidates of different tasks (and, where a baseline is timed, classifiers of different
    label counts): one bench run compares models of one task against one baseline with that same head."""
    tasks: dict[str, list[str]] = {}
    heads: dict[str, list[str]] = {}
    for t in candidates:
        tasks.setdefault(t.task_name, []).append(t.label)
        heads.setdefault(t.head, []).append(t.label)
    def groups(by: dict[str, list[str]]) -> str:
        return "; ".join(f"{', '.join(labels)} {'are' if len(labels) > 1 else 'is'} {head}" for head, labels in by.items())

    if len(tasks) > 1:
        raise PocketbertError(f"bench compares models of one task, but {groups(tasks)}; run `pocketbert bench` once "
                              "for each task")
    if baseline and len(heads) > 1:
        raise PocketbertError(f"bench times candidates against one baseline with their head, but {groups(heads)}; run "
                              "`pocketbert bench` once for each label count, or pass --no-baseline")


def saved_checkpoint(preset: str, cache: Path, task: Task = QUESTION_ANSWERING, labels: list[str] | None = None) -> str:
    """A preset written once as a checkpoint with the head of `task` (a classifier's with `labels`, in logit order),
    so its file and gzip sizes are real bytes on disk."""
    labels = list(labels or ("LABEL_0", "LABEL_1")) if task is TEXT_CLASSIFICATION else None
    folder = cache / (f"{preset}-checkpoint" if task.masked else f"{preset}-{task.name}-{len(labels or ())}-labels")
    config = folder / "config.json"
    if not config.is_file() or (labels is not None and _saved_labels(config) != labels):
        loaded = load_model(preset, task=task, labels=labels)
        with atomic_dir(folder, force=True) as tmp:
            loaded.model.save_pretrained(str(tmp))
            loaded.tokenizer.save_pretrained(str(tmp))
    return str(folder)


def _saved_labels(config: Path) -> list[str] | None:
    """The label names of a saved checkpoint's config.json, in logit order (None where unreadable)."""
    try:
        id2label = json.loads(config.read_text()).get("id2label") or {}
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _intact(folder: Path) -> bool:
    """A cached baseline artifact whose manifest reads and whose file is the one exported (else it is exported again)."""
    try:
        read_manifest(folder, verify=True)
    except PocketbertError:
        return False
    return True


def _exported_baseline(baseline: str, like: Target, folder: Path, lengths: list[int]) -> Path:
    seq = like.manifest["sequence"]
    seq_lens = tuple(seq["lengths"]) if not seq["dynamic"] else tuple(sorted(set(seq["lengths"]) | set(lengths)))
    if (folder / MANIFEST_NAME).is_file() and _intact(folder):
        cached = read_manifest(folder)
        covers = (cached["sequence"]["max"] >= max(seq_lens) if seq["dynamic"]
                  else set(seq_lens) <= set(cached["sequence"]["lengths"]))
        same_calibration = cached["options"].get("calibration") == like.manifest["options"].get("calibration")
        # The manifest names a local checkpoint by its resolved path, a preset or hub id as given.
        exported_from = baseline if baseline in PRESETS or not Path(baseline).is_dir() else str(Path(baseline).resolve())
        if (cached["source"]["checkpoint"] == exported_from and cached["sequence"]["dynamic"] == seq["dynamic"]
                and covers and same_calibration):
            return folder  # exporting BERT-base again costs minutes; the cached one is the same artifact
    # A statically quantized candidate's own calibration file calibrates the baseline too, so both see the same data.
    export_model(baseline, like.format, folder, precision=like.precision, seq_lens=seq_lens, dynamic=seq["dynamic"],
                 backend=like.backend, calibration=like.manifest["options"].get("calibration"), force=True)
    return folder


# --- the benchmark: plan, probe, measure, write ------------------------------------------------------------

@dataclass(frozen=True)
class BenchSettings:
    """What `pocketbert bench` times and how often; written into results.json's settings."""

    seq_lens: tuple[int, ...] = (384,)  # every mode runs these
    sweep: tuple[int, ...] = ()  # extra lengths, model-only mode
    modes: tuple[str, ...] = MODES
    warmup: int = 10
    runs: int = 50
    threads: int | None = None  # None: every core this process may use

    def checked(self) -> BenchSettings:
        """These settings with the thread count resolved, or one line naming what is wrong."""
        if self.runs < 1 or self.warmup < 0:
            raise PocketbertError("--runs must be at least 1 and --warmup at least 0")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise PocketbertError(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
        if not self.lengths or min(self.lengths) < 8:
            raise PocketbertError("sequence lengths must be at least 8 tokens")
        return replace(self, threads=self.threads or len(os.sched_getaffinity(0)))

    @property
    def lengths(self) -> list[int]:
        """Every length timed: the main lengths and the sweep's, sorted and without repeats."""
        return sorted(set(self.seq_lens) | set(self.sweep))

    def plan(self) -> list[tuple[str, int]]:
        """(mode, length) pairs in the order they are timed: end-to-end only at the main lengths."""
        return [(mode, n) for mode in self.modes for n in self.lengths if mode == "model" or n in self.seq_lens]


@dataclass(frozen=True)
class Baseline:
    """The model every candidate is compared with."""

    checkpoint: str | None = DEFAULT_BASELINE  # a checkpoint folder or preset; None: candidates only
    exported: bool = True  # also exported to each candidate's format/precision, not only PyTorch eager


def run_bench(models: list[str], out: str | Path, settings: BenchSettings = BenchSettings(),
              baseline: Baseline = Baseline(), goals: Goals = Goals(), merge=(), verify: bool = True) -> dict:
    """Measure every model (and the baseline) and write results.json, report.md and plots into `out`.

    `verify=False` (--no-verify): time artifacts whose file no longer matches their manifest's sha256."""
    if not models:
        raise PocketbertError("nothing to benchmark; pass artifact folders or checkpoints")
    settings = settings.checked()
    # An output place that cannot be written fails first; a failed run leaves none.
    with artifact_verification(verify), new_output_folder(out) as out:
        candidates = open_targets(models)
        check_one_head(candidates, baseline.checkpoint)
        extras = [load_results(path) for path in merge]
        targets = plan_targets(candidates, out, settings, baseline)
        records, runners, tokenizers = probe_targets(targets, settings)
        assert settings.threads is not None  # checked() fills in every usable core
        peaks = measure_peaks(settings.threads)
        records += measure_latency(targets, runners, tokenizers, settings, peaks)
        return write_results(out, records, settings, baseline, goals, peaks, extras, candidates[0].task)


def plan_targets(candidates: list[Target], out: Path, settings: BenchSettings, baseline: Baseline) -> list[Target]:
    """The candidates, then the baseline (in PyTorch eager and, if asked, exported like each candidate)."""
    targets = list(candidates)
    if baseline.checkpoint:
        targets += baseline_targets(baseline.checkpoint, targets, out / BASELINE_CACHE, baseline.exported,
                                    settings.lengths)
    return targets


def probe_targets(targets: list[Target], settings: BenchSettings) -> tuple[list[dict], dict, dict]:
    """Load time, first inference and RSS of each target in a fresh process, then load the runnable ones here.

    Returns the records of targets that cannot be timed, and runners and tokenizers by label for the rest.
    """
    records, runners, tokenizers = [], {}, {}
    lengths, threads = settings.lengths, settings.threads
    assert threads is not None  # settings come here checked(), with every usable core filled in
    for t in tqdm(targets, desc="load + first inference (fresh process each)", unit="model"):
        t.extra["first_len"] = next((n for n in lengths if t.supports(n)), None)
        if t.extra["first_len"] is None:
            records.append(make_record(**t.record_fields(), threads=threads, status="not_measurable",
                                       reason=f"supports lengths {list(t.lengths or [])} up to {t.max_len}, none of {lengths}"))
            continue
        facts = probe(t, threads, t.extra["first_len"])
        if facts["status"] != "ok":
            records.append(make_record(**t.record_fields(), threads=threads, status=facts["status"],
                                       reason=facts["reason"]))
            continue
        parameters = facts.pop("parameters", None)
        t.parameters = t.parameters or parameters
        t.extra["probe"] = facts
        try:
            runners[t.label] = load_timed_runner(t, threads)
            t.lengths = runners[t.label].lengths  # the runtime knows best: ONNX runs any length up to the max
            tokenizers[t.label] = tokenizer_for(t)
        except NotRunnableHere as reason:  # the probe ran it; only a mismatch between processes lands here
            records.append(make_record(**t.record_fields(), threads=threads, status="not_measurable", reason=str(reason)))
    return records, runners, tokenizers


def measure_latency(targets: list[Target], runners: dict, tokenizers: dict, settings: BenchSettings,
                    peaks: dict[str, float]) -> list[dict]:
    """Interleaved latency of every loaded target at each planned (mode, length); efficiency against the GEMM
    peak of the artifact's own precision."""
    records, threads, plan = [], settings.threads, settings.plan()
    loaded = [t for t in targets if t.label in runners]
    total = sum(len([t for t in loaded if t.supports(n)]) for _, n in plan) * (settings.warmup + settings.runs)
    progress = tqdm(total=total, desc="interleaved latency", unit="call")
    for mode, n in plan:
        for t in loaded:
            if not t.supports(n):
                records.append(make_record(**t.record_fields(), seq_len=n, mode=mode, threads=threads,
                                           status="not_measurable",
                                           reason=f"fixed lengths {list(t.lengths or [])}, max {t.max_len}"))
        group = [t for t in loaded if t.supports(n)]
        samples = _interleaved(group, mode, n, settings.warmup, settings.runs, runners, tokenizers, progress)
        for t in group:
            record = dict(t.record_fields(), seq_len=n, mode=mode, threads=threads,
                          runtime_settings=applied(settings_of(t.manifest), threads) if t.manifest else None)
            if isinstance(samples[t.label], str):
                records.append(make_record(**record, status="failed", reason=samples[t.label]))
                continue
            probe_facts = t.extra["probe"] if n == t.extra["first_len"] and mode == "model" else {}
            latency = latency_stats(samples[t.label], settings.warmup)
            flops = encoder_flops(t.encoder, n)
            peak = peaks[peak_precision(t.precision)]
            efficiency = flops / (latency[RATIO_STATISTIC] / 1000) / (peak * 1e9) if flops and mode == "model" else None
            records.append(make_record(**record, **probe_facts, latency_ms=latency, flops=flops, efficiency=efficiency))
    progress.close()
    return records


def write_results(out: Path, records: list[dict], settings: BenchSettings, baseline: Baseline, goals: Goals,
                  peaks: dict[str, float], extras: list[dict], task: Task = QUESTION_ANSWERING) -> dict:
    """results.json (joined with the --merge files), report.md and the plots."""
    e2e = {"e2e_question": E2E_EXAMPLE.question} if task.masked else {"e2e_text": E2E_TEXT}
    results = new_results({"task": task.name,
        "warmup": settings.warmup, "runs": settings.runs, "threads": settings.threads, "interleaved": True,
        "seq_lens": list(settings.seq_lens), "sweep": list(settings.sweep), "modes": list(settings.modes),
        "baseline": baseline.checkpoint, "export_baseline": baseline.exported,
        "peak_matmul_gflops": peaks["fp32"], "peak_gflops_by_precision": peaks, "matmul_size": MATMUL_SIZE,
        **e2e, "statistic_for_ratios": RATIO_STATISTIC, "goals": asdict(goals)}, records)
    for extra in extras:
        results = merge_results(results, extra)
    save_results(out / RESULTS_NAME, results)
    write_report(results, out)
    return results


def _interleaved(group, mode, length, warmup, runs, runners, tokenizers, progress) -> dict:
    """Milliseconds per call for each target, calling them in turn A B A B ...; a failure becomes its reason."""
    calls = {t.label: timed_call(runners[t.label], tokenizers[t.label], mode, length, t.task) for t in group}
    return interleave(calls, warmup, runs, progress)


def interleave(calls: dict, warmup: int, runs: int, progress) -> dict[str, list[float] | str]:
    """Milliseconds of each named no-argument call over `runs` rounds after `warmup`, the calls made in turn
    A B A B ... so that drift hits all alike; a call that raises stops there and its samples become the reason."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    failures: dict[str, str] = {}
    for i in range(warmup + runs):
        for name, call in calls.items():
            if name in failures:
                progress.update()
                continue
            start = time.perf_counter()
            try:
                call()
            except Exception as err:  # a runtime failing at one length must not sink the whole run
                failures[name] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"
                progress.update()
                continue
            elapsed = 1000 * (time.perf_counter() - start)
            if i >= warmup:
                samples[name].append(elapsed)
            progress.update()
    return {name: failures.get(name, samples[name]) for name in calls}


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(probe_in_this_process(request["path"], request["threads"], request["seq_len"])))
