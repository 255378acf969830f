"""`pocketbert device run`: bundle each artifact, push it to a device, run it there, pull, parse, merge.

A bundle is a folder: the artifact, its manifest, fixed inputs (.npy, and raw .bin for native runners)
from a real tokenised QA pair, the outputs the artifact gives on the host (or PyTorch's where its runtime
cannot run here), bundle.json (what to run and how often) and the standalone device_runner.py.
Each measured artifact is merged into OUT/results.json at once, so a device lost mid-run loses nothing
already measured.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketbert.bench.runtimes import gzip_size
from pocketbert.bench.results import RESULTS_NAME, load_results, make_record, merge_results, new_results, save_results
from pocketbert.bench.stats import latency_stats
from pocketbert.errors import NotRunnableHere, PocketbertError
from pocketbert.export.base import FP32_TOLERANCE
from pocketbert.export.task import validation_inputs
from pocketbert.fsutil import write_json
from pocketbert.manifest import MANIFEST_NAME, read_manifest
from pocketbert.mobile_harness.targets import RUNNER_SCRIPT, DeviceLost, HostTarget, SshTarget, Target

DEFAULT_SEQ_LEN = 384
RUNTIMES = {"onnx": "onnxruntime", "tflite": "litert", "executorch": "executorch", "coreml": "coreml"}
SPACE_MARGIN = 1.2  # room for the runner's own outputs and the file system's rounding


@dataclass
class Bundle:
    folder: Path  # local staging folder; its name is also the folder name on the device
    manifest: dict
    config: dict  # bundle.json
    role: str
    source: Path  # the artifact folder it was made from

    @property
    def name(self) -> str:
        return self.folder.name


def choose_seq_len(manifest: dict, requested: int | None) -> int:
    seq = manifest["sequence"]
    allowed = (lambda n: seq["min"] <= n <= seq["max"]) if seq["dynamic"] else (lambda n: n in seq["lengths"])
    if requested is not None:
        if not allowed(requested):
            shown = f"{seq['min']}..{seq['max']}" if seq["dynamic"] else seq["lengths"]
            raise PocketbertError(f"artifact '{manifest['artifact']}' does not run length {requested} (it runs {shown}); "
                                  "pass another --seq-len or re-export")
        return requested
    return DEFAULT_SEQ_LEN if allowed(DEFAULT_SEQ_LEN) else max(seq["lengths"])


def model_name(manifest: dict) -> str:
    source = manifest["source"]
    return source.get("preset") or Path(str(source["checkpoint"]).rstrip("/")).name


def expected_outputs(folder: Path, manifest: dict, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], str]:
    """The artifact's own outputs from its host runtime, or PyTorch's where that runtime cannot run here."""
    from pocketbert.export.registry import get_format

    try:
        runner = get_format(manifest["format"]).load(folder / manifest["artifact"], manifest)
        return [np.asarray(x, np.float32) for x in runner(inputs)], f"{manifest['format']} on the host"
    except NotRunnableHere:
        from pocketbert.export.task import exportable_qa, torch_reference
        from pocketbert.modeling import load_qa_model

        module = exportable_qa(load_qa_model(manifest["source"]["checkpoint"]).model)
        return [np.asarray(x, np.float32) for x in torch_reference(module, inputs)], "pytorch on the host"


def make_bundle(folder: Path, role: str, staging: Path, index: int, warmup: int, runs: int, threads: int | None,
                seq_len: int | None) -> Bundle:
    from pocketbert.modeling import load_tokenizer

    manifest = read_manifest(folder)
    length = choose_seq_len(manifest, seq_len)
    names = [spec["name"] for spec in manifest["inputs"]]
    # Row 0 of the real validation pairs: mobile QA answers one question at a time.
    inputs = {name: value[:1] for name, value in validation_inputs(load_tokenizer(folder), names, length).items()}
    expected, expected_from = expected_outputs(folder, manifest, inputs)

    bundle_dir = staging / f"{index:02d}-{role}-{manifest['format']}-{manifest['precision']}"
    bundle_dir.mkdir(parents=True)
    artifact = folder / manifest["artifact"]
    (shutil.copytree if artifact.is_dir() else shutil.copy2)(artifact, bundle_dir / artifact.name)
    shutil.copy2(folder / MANIFEST_NAME, bundle_dir / MANIFEST_NAME)
    shutil.copy2(RUNNER_SCRIPT, bundle_dir / RUNNER_SCRIPT.name)
    input_dtype = next(spec["dtype"] for spec in manifest["inputs"])
    for name, value in inputs.items():
        np.save(bundle_dir / f"input_{name}.npy", value)
        # Native runners read raw little-endian bytes in the artifact's own input dtype.
        value.astype(input_dtype).tofile(bundle_dir / f"input_{name}.bin")
    for name, value in zip(("start_logits", "end_logits"), expected):
        np.save(bundle_dir / f"expected_{name}.npy", value)
    config = {
        "artifact": artifact.name, "format": manifest["format"], "precision": manifest["precision"],
        "seq_len": length, "warmup": warmup, "runs": runs, "threads": threads,
        "inputs": {name: f"input_{name}.npy" for name in names},
        "raw_inputs": {name: f"input_{name}.bin" for name in names}, "input_dtype": input_dtype,
        "expected": ["expected_start_logits.npy", "expected_end_logits.npy"], "expected_from": expected_from,
        # Reduced precisions are judged on argmax agreement only, as at export time.
        "tolerance": FP32_TOLERANCE if manifest["precision"] == "fp32" else None,
    }
    write_json(bundle_dir / "bundle.json", config)
    return Bundle(bundle_dir, manifest, config, role, folder)


def bundle_bytes(bundle: Bundle) -> int:
    return sum(p.stat().st_size for p in bundle.folder.rglob("*") if p.is_file())


def compare_outputs(outputs: list[np.ndarray], bundle: Bundle) -> dict:
    """Device outputs against the expected ones (for runners that write their outputs as files)."""
    expected = [np.load(bundle.folder / file) for file in bundle.config["expected"]]
    diffs = [float(np.abs(out.reshape(exp.shape) - exp).max()) for out, exp in zip(outputs, expected)]
    agree = all(bool((out.reshape(exp.shape).argmax(-1) == exp.argmax(-1)).all()) for out, exp in zip(outputs, expected))
    tolerance = bundle.config["tolerance"]
    return {"max_abs_diff": max(diffs), "tolerance": tolerance, "argmax_agree": agree,
            "passed": max(diffs) <= tolerance if tolerance is not None else agree}


def outcome(outputs: dict | None) -> dict:
    """status/reason of a measured run from its output check (None: the runner could not write outputs)."""
    if outputs is None or outputs["passed"]:
        return {"status": "ok", "reason": None if outputs else "outputs not checked: this runner does not write them"}
    return {"status": "failed", "reason": f"device outputs differ from the expected ones: max |diff| "
                                          f"{outputs['max_abs_diff']:.2e}, argmax agree {outputs['argmax_agree']}"}


def measure_with_python(target: Target, bundle: Bundle) -> dict:
    """Host and ssh boards: push the bundle, run device_runner.py with the device's Python, pull result.json."""
    remote = target.path(bundle.name)
    target.push(bundle.folder, remote)
    result = target.run([target.remote_python, target.path(bundle.name, RUNNER_SCRIPT.name), remote])
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.decode(errors="replace").splitlines() if ln.strip()]
        return {"status": "failed", "reason": f"device runner failed: {lines[-1] if lines else 'no output'}",
                "runtime": RUNTIMES.get(bundle.config["format"])}
    local = bundle.folder / "result.json"
    target.pull(target.path(bundle.name, "result.json"), local)
    data = json.loads(local.read_text())
    return {"runtime": data["runtime"], "load_ms": data["load_ms"], "first_ms": data["first_ms"],
            "latency_ms": latency_stats(data["latencies_ms"], warmup=data["warmup"]),
            "peak_rss_bytes": data["peak_rss_bytes"], "outputs": data["outputs"],
            "device_facts": {**data["device"], "runtime_version": data["runtime_version"]},
            **outcome(data["outputs"])}


def measure(target: Target, bundle: Bundle, runners: dict[str, Path]) -> dict:
    from pocketbert.mobile_harness import android, ios_target
    from pocketbert.mobile_harness.targets import AndroidTarget

    if isinstance(target, (HostTarget, SshTarget)):
        if bundle.config["format"] == "coreml":
            return {"status": "not_measurable", "reason": "Core ML runs only on Apple devices; use an ios:UDID target",
                    "runtime": "coreml"}
        return measure_with_python(target, bundle)
    if isinstance(target, AndroidTarget):
        return android.measure(target, bundle, runners)
    return ios_target.measure(target, bundle)


def to_record(bundle: Bundle, measured: dict, device: dict, threads: int | None) -> dict:
    manifest = bundle.manifest
    artifact = bundle.source / manifest["artifact"]
    return make_record(
        model=model_name(manifest), role=bundle.role, artifact=str(bundle.source), format=manifest["format"],
        runtime=measured.get("runtime") or RUNTIMES.get(manifest["format"]), backend=manifest.get("backend"),
        precision=manifest["precision"], seq_len=bundle.config["seq_len"], mode="model", threads=threads,
        device={**device, **(measured.get("device_facts") or {}), "target": device["target"]},
        random_weights=bool(manifest["source"].get("random_weights")), parameters=manifest.get("parameters"),
        file_bytes=manifest.get("file_bytes"), gzip_bytes=gzip_size(artifact),
        peak_rss_bytes=measured.get("peak_rss_bytes"), load_ms=measured.get("load_ms"),
        first_ms=measured.get("first_ms"), latency_ms=measured.get("latency_ms"),
        status=measured["status"], reason=measured.get("reason"),
    )


def merge_into(out: Path, settings: dict, records: list[dict]) -> Path:
    """Join device rows into OUT/results.json (created if absent), written atomically."""
    extra = new_results(settings, records)
    path = out / RESULTS_NAME
    merged = merge_results(load_results(path), extra) if path.exists() else extra
    return save_results(path, merged)


def run_on_device(target: Target, artifacts: list[str | Path], out: str | Path, baseline: str | Path | None = None,
                  warmup: int = 10, runs: int = 50, threads: int | None = None, seq_len: int | None = None,
                  runners: dict[str, Path] | None = None) -> list[dict]:
    """Measure each artifact (and the baseline) on `target`; returns the records merged into OUT/results.json."""
    if runs < 1 or warmup < 0:
        raise PocketbertError("--runs must be at least 1 and --warmup at least 0")
    if not artifacts:
        raise PocketbertError("pass at least one artifact folder (from `pocketbert export`)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PocketbertError(f"--out '{out}' is a file; pass a folder (results.json goes inside it)")
    items = [(Path(a), "candidate") for a in artifacts] + ([(Path(baseline), "baseline")] if baseline else [])
    for folder, _ in items:
        read_manifest(folder)  # every folder is checked before the device is touched
    target.check()
    device = {"target": target.spec, **target.info(), "threads": threads}
    settings = {"target": target.spec, "warmup": warmup, "runs": runs, "threads": threads, "output_checks": {}}
    done: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pocketbert-bundles-") as staging:
        progress = tqdm(items, desc=f"device {target.spec}", unit="artifact")
        for index, (folder, role) in enumerate(progress):
            progress.set_postfix_str(folder.name)
            bundle = make_bundle(folder, role, Path(staging), index, warmup, runs, threads, seq_len)
            try:
                check_space(target, bundle)
                measured = measure(target, bundle, runners or {})
                target.remove(target.path(bundle.name))
            except DeviceLost as lost:
                missing = [str(f) for f, _ in items[index:]]
                saved = f"{out / RESULTS_NAME} keeps the {len(done)} measured before" if done else "nothing was measured"
                raise DeviceLost(f"{lost}; {saved}; missing: {', '.join(missing)} — rerun those") from None
            record = to_record(bundle, measured, device, threads)
            settings["output_checks"][f"{role}:{folder}"] = {**(measured.get("outputs") or {}),
                                                             "expected_from": bundle.config["expected_from"]}
            merge_into(out, settings, [record])
            done.append(record)
        progress.close()
    plot_device_results(out, target.spec)
    return done


def check_space(target: Target, bundle: Bundle) -> None:
    free, needed = target.free_space(), int(bundle_bytes(bundle) * SPACE_MARGIN)
    if free is not None and free < needed:
        raise PocketbertError(f"{target.spec} has {free / 1e6:.0f} MB free in {target.workdir} but the "
                              f"{bundle.manifest['format']} bundle needs {needed / 1e6:.0f} MB; free space or pass --workdir")


def plot_device_results(out: Path, target: str) -> Path | None:
    """device_latency_TARGET.png: mean latency per model and runtime on this target, baseline ratios in the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pocketbert.bench.results import baseline_ratios

    records = [r for r in load_results(out)["records"]
               if (r["device"] or {}).get("target") == target and r["status"] == "ok" and r["latency_ms"]]
    if not records:
        return None
    speedups = {(c["candidate"], c["runtime"], c["precision"]): c["speedup"] for c in baseline_ratios(records)}
    labels, values = [], []
    for r in records:
        ratio = speedups.get((r["model"], r["runtime"], r["precision"]))
        labels.append(f"{r['model']} ({r['role']})\n{r['runtime']}/{r['precision']}/L{r['seq_len']}"
                      + (f"\n{ratio:.2f}x vs baseline" if ratio else ""))
        values.append(r["latency_ms"]["mean"])
    figure, axis = plt.subplots(figsize=(max(5, 1.8 * len(values)), 4))
    axis.bar(range(len(values)), values, color=["#999999" if r["role"] == "baseline" else "#3b7dd8" for r in records])
    axis.set_xticks(range(len(values)), labels, fontsize=7)
    axis.set_ylabel("mean latency (ms)")
    model = (records[0]["device"] or {}).get("model") or target
    axis.set_title(f"{target} — {model}", fontsize=9)
    figure.tight_layout()
    path = out / f"device_latency_{re.sub(r'[^A-Za-z0-9._-]+', '_', target)}.png"
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)
    return path
