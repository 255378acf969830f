"""`pocketbert bench peers`: our exports beside the standard route a user would otherwise take, per format, on one
QA checkpoint and this CPU.

Each peer artifact is made by the peer's own tool exactly as its documentation shows a user, then gets a
manifest.json beside it (inputs, format, precision, source, the route and its command), so bench opens it like one of
ours: `run_bench` times every artifact in one interleaved run in the same runtime (the core venv's), with the same
runner (ONNX Runtime: same session settings, thread spinning off) and threads, and every artifact, ours and theirs,
is checked against the unmodified transformers model in its runtime by the same validation as `pocketbert export`.
A peer whose tool is missing or cannot make a QA artifact is a row that says why, never a crash.
"""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from pocketbert.bench.measure import Baseline, BenchSettings, run_bench, saved_checkpoint
from pocketbert.bench.report import MB, markdown_table, save_figure
from pocketbert.errors import PocketbertError, first_line
from pocketbert.export import export_model, exportable, get_format
from pocketbert.export import tflite_signature_name as signature_name
from pocketbert.fsutil import atomic_dir, atomic_write_text, new_output_folder, write_json
from pocketbert.manifest import build_manifest, io_entries, read_manifest, tool_versions, write_manifest
from pocketbert.modeling import PRESETS, LoadedModel, load_qa_model
from pocketbert.reference import validation_inputs
from pocketbert.results import EAGER_FORMAT, RATIO_STATISTIC, RESULTS_NAME, machine_info

PEERS_SCHEMA = "pocketbert.peers/1"
PEERS_FILE = "peers.json"  # its own name: results.json is bench's (the timed rows are in bench/results.json)
FORMATS = ("onnx", "tflite", "executorch")
PRECISIONS = ("fp32", "int8")
# `make setup` builds the peers' venvs in the repository, beside .venv; none of them is a dependency of pocketbert.
REPOSITORY = Path(__file__).resolve().parents[2]  # bench/studies/peers.py -> the repository
OPTIMUM_VENV = REPOSITORY / ".venv-optimum"
NOT_INSTALLED = "not installed: run make setup"
# Checked 2026-12-01: optimum-executorch 1.1.0, the latest on PyPI, installs beside torch 2.13.0 and executorch 1.5.1
# only in a venv of its own (it pins transformers==5.0.0rc1), and neither it nor 0.1.0 registers a question-answering
# task; its `optimum-cli export executorch --task question-answering --recipe xnnpack` on a DistilBERT QA checkpoint
# ends in "TypeError: 'NoneType' object is not callable" (the task's missing loader).
OPTIMUM_EXECUTORCH_MISSING_TASK = (
    "unavailable: optimum-executorch 1.1.0 (the latest) has no question-answering task (its tasks: text-generation, "
    "fill-mask, text2text-generation, automatic-speech-recognition, image-classification, image-text-to-text); "
    "`optimum-cli export executorch --task question-answering --recipe xnnpack` fails with a TypeError")
PEER_TOOL_TIMEOUT_S = 3600  # a real-size export takes minutes; a hung tool must still end the run


@dataclass(frozen=True)
class PeerRun:
    """What every route reads: the checkpoint, the length everything is exported and timed at, the peers' venvs."""

    checkpoint: str  # a checkpoint folder (a preset is saved as one first)
    seq_len: int
    folder: Path  # artifacts/ under the output folder
    optimum_venv: Path = OPTIMUM_VENV
    made: set[str] = field(default_factory=set)  # artifact folders this run wrote (a folder from an earlier run is stale)

    def optimum_cli(self) -> Path:
        return self.optimum_venv / "bin" / "optimum-cli"


@dataclass(frozen=True)
class Route:
    """One way from the checkpoint to an artifact of `format`/`precision`."""

    format: str
    precision: str
    name: str  # who made it: "pocketbert", "optimum-onnx --avx2", ...
    ours: bool
    build: Callable[[PeerRun, Path], str] | None  # makes the artifact folder, returns the command it ran
    folder: str  # the artifact folder's name under artifacts/ (also its label in bench's report)
    unavailable: Callable[[PeerRun], str | None] = lambda run: None  # why the route cannot run here, or None
    # A peer's own route. Our file opened another way (DEFAULTS_ROUTE) is not: alone it makes no comparison.
    peer: bool = True


class RouteFailed(PocketbertError):
    """The route's tool ran and failed; the row says how."""


# --- our routes ---------------------------------------------------------------------------------------------

def our_export(format: str, precision: str) -> Callable[[PeerRun, Path], str]:
    def build(run: PeerRun, folder: Path) -> str:
        export_model(run.checkpoint, format, folder, precision=precision, seq_lens=(run.seq_len,), force=True)
        return (f"pocketbert export {run.checkpoint} --format {format} --precision {precision} --seq-len {run.seq_len} "
                f"--out {folder}")

    return build


DEFAULTS_ROUTE = "pocketbert, ONNX Runtime defaults"
# ONNX Runtime's default session options, as optimum's pipeline and transformers.js open a folder: none of the
# manifest's settings, except idle-thread spinning off, which only keeps the interleaved timing loop fair.
ONNX_RUNTIME_DEFAULTS = {
    "runtime": "onnxruntime",
    "config_entries": {"session.intra_op.allow_spinning": "0"},
    "why": {"session.intra_op.allow_spinning": "bench hygiene: spinning threads slow whatever runs next in the loop"},
}


def our_file_under_defaults(precision: str) -> Callable[[PeerRun, Path], str]:
    """Our own ONNX file (a copy of our route's folder, exported here first if that route was not asked for), whose
    manifest asks for ONNX Runtime's defaults: what the manifest's runtime settings are worth, timed beside them."""

    def build(run: PeerRun, folder: Path) -> str:
        ours = f"onnx-{precision}-pocketbert"
        if ours not in run.made:
            our_export("onnx", precision)(run, run.folder / ours)
            run.made.add(ours)
        with atomic_dir(folder, force=True) as tmp:
            shutil.copytree(run.folder / ours, tmp, dirs_exist_ok=True)
            manifest = read_manifest(tmp)
            manifest["runtime_settings"] = ONNX_RUNTIME_DEFAULTS
            manifest["route"] = {"tool": "pocketbert", "command": f"a copy of {ours} opened with ONNX Runtime's "
                                                                 "default session options"}
            write_manifest(tmp, manifest)
        return manifest["route"]["command"]

    return build


# --- the peers' routes ----------------------------------------------------------------------------------------

def optimum_missing(run: PeerRun) -> str | None:
    return None if run.optimum_cli().is_file() else f"{NOT_INSTALLED} (no {run.optimum_cli()})"


def optimum_onnx_export(run: PeerRun, folder: Path) -> str:
    return optimum_cli_route(run, folder, "fp32", "model.onnx",
                             ["export", "onnx", "--task", "question-answering", "--model", run.checkpoint])


def optimum_onnx_quantize(isa: str) -> Callable[[PeerRun, Path], str]:
    """optimum's dynamic int8 for one instruction set (its ORTConfig presets), from optimum's own fp32 export (made
    here first when the fp32 routes were not asked for)."""

    def build(run: PeerRun, folder: Path) -> str:
        fp32 = run.folder / OPTIMUM_FP32
        if OPTIMUM_FP32 not in run.made:
            optimum_onnx_export(run, fp32)
            run.made.add(OPTIMUM_FP32)
        return optimum_cli_route(run, folder, "int8", "model_quantized.onnx",
                                 ["onnxruntime", "quantize", "--onnx_model", str(fp32), f"--{isa}", "-o"])

    return build


def optimum_cli_route(run: PeerRun, folder: Path, precision: str, artifact: str, arguments: list[str]) -> str:
    """Run `optimum-cli ARGUMENTS OUT` from optimum's venv and describe the ONNX file it writes into OUT."""
    command = "optimum-cli " + " ".join(arguments + [str(folder)])
    with atomic_dir(folder, force=True) as tmp:
        run_tool([str(run.optimum_cli()), *arguments, str(tmp)])
        describe_peer(run, tmp, "onnx", precision, artifact, peer_route("optimum-onnx", run, command))
    return command


def litert_torch_default(run: PeerRun, folder: Path) -> str:
    """litert-torch's conversion of the unmodified transformers model, as its README shows a user, at the bench
    length. The signature is named for the length (`convert(...)` is `signature("serving_default", ...).convert()`),
    so that bench's LiteRT runner finds it; the conversion is the same."""
    import litert_torch  # lazy: optional converter (pulls in TensorFlow, seconds); only this peer needs it

    loaded, names, sample = original_model_and_sample(run)
    signature = signature_name(run.seq_len)
    command = (f"litert_torch.signature('{signature}', AutoModelForQuestionAnswering.from_pretrained('{run.checkpoint}')"
               f".eval(), sample_kwargs={{{', '.join(names)}: a tokenised question and context padded to "
               f"{run.seq_len}}}).convert().export('{folder / 'model.tflite'}')")
    with atomic_dir(folder, force=True) as tmp:
        try:
            litert_torch.signature(signature, loaded.model.eval(), sample_kwargs=sample).convert() \
                .export(str(tmp / "model.tflite"))
        except Exception as err:  # the peer's converter failing on this model is its finding, not our crash
            raise RouteFailed(f"failed: litert-torch: {first_line(err)}") from None
        loaded.tokenizer.save_pretrained(str(tmp))
        describe_peer(run, tmp, "tflite", "fp32", "model.tflite", peer_route("litert-torch", run, command))
    return command


def executorch_documented_xnnpack(run: PeerRun, folder: Path) -> str:
    """ExecuTorch's own XNNPACK recipe from its documentation, applied to the unmodified transformers model at the
    bench length: torch.export, to_edge_transform_and_lower with the XnnpackPartitioner, to_executorch. It stands in
    for optimum-executorch, which has no question-answering task."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # lazy: optional converter
    from executorch.exir import to_edge_transform_and_lower  # lazy: optional converter, only this peer needs it

    loaded, names, sample = original_model_and_sample(run)
    command = (f"to_edge_transform_and_lower(torch.export.export(AutoModelForQuestionAnswering.from_pretrained("
               f"'{run.checkpoint}').eval(), (), {{{', '.join(names)}: [1, {run.seq_len}]}}), "
               "partitioner=[XnnpackPartitioner()]).to_executorch()")
    with atomic_dir(folder, force=True) as tmp:
        try:
            with torch.no_grad():
                program = torch.export.export(loaded.model.eval(), (), sample)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        except Exception as err:  # the recipe failing on this model is its finding, not our crash
            raise RouteFailed(f"failed: executorch: {first_line(err)}") from None
        (tmp / "model.pte").write_bytes(lowered.buffer)
        loaded.tokenizer.save_pretrained(str(tmp))
        describe_peer(run, tmp, "executorch", "fp32", "model.pte", peer_route("executorch", run, command), names)
    return command


def original_model_and_sample(run: PeerRun):
    """The unmodified model, the inputs the tokenizer hands it, and one tokenised question and context padded to
    the bench length: what the peers' converters trace."""
    loaded = original_model(run.checkpoint)
    names = exportable(loaded.model).input_names
    sample = {name: torch.from_numpy(values[:1])
              for name, values in validation_inputs(loaded.tokenizer, names, run.seq_len).items()}
    return loaded, names, sample


def peer_route(package: str, run: PeerRun, command: str) -> dict:
    """The manifest's "route": the tool and its version, and the command that made the artifact."""
    version = package_version(package, run)
    return {"tool": f"{package} {version}" if version else package, "command": command}


def package_version(package: str, run: PeerRun) -> str | None:
    """The version installed in the peer's venv (optimum) or in ours (litert-torch)."""
    if package.startswith("optimum"):
        sites = [str(p) for p in run.optimum_venv.glob("lib/python*/site-packages")]
        found = [d.version for d in importlib.metadata.distributions(path=sites) if d.metadata["Name"] == package]
        return found[0] if found else None
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_tool(command: list[str]) -> None:
    """A peer's command line; its failure becomes the row's reason (its last line of output)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PEER_TOOL_TIMEOUT_S,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        raise RouteFailed(f"failed: {Path(command[0]).name} ran past {PEER_TOOL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RouteFailed(f"failed: {Path(command[0]).name} exited {done.returncode}: {tail[:300]}")


def describe_peer(run: PeerRun, folder: Path, format: str, precision: str, artifact: str, route: dict,
                  input_names: list[str] | None = None) -> dict:
    """manifest.json for a peer's artifact folder, so bench opens it like ours; validated like ours against the
    unmodified transformers model in the format's runtime (recorded, never refused: a peer's numbers are findings)."""

    path = folder / artifact
    if not path.is_file():
        raise RouteFailed(f"failed: the tool wrote no {artifact} (found {sorted(p.name for p in folder.iterdir())})")
    exporter = get_format(format)
    loaded = original_model(run.checkpoint)
    names = list(input_names or artifact_input_names(format, path))  # a .pte declares no input names
    inputs, outputs = io_entries(names, exporter.input_dtype, "batch" if exporter.batch_dynamic else 1, run.seq_len)
    # Opened with the same runtime settings as ours, so the rows compare the files (the graphs and their kernels), not
    # the settings; how our own file runs under the runtime's defaults is a route of its own (DEFAULTS_ROUTE).
    manifest = build_manifest(
        folder, path, format=format, backend=None, precision=precision, inputs=inputs, outputs=outputs,
        sequence={"dynamic": False, "min": run.seq_len, "max": run.seq_len, "lengths": [run.seq_len]},
        source=loaded.source, runtime_settings=exporter.runtime_settings, route=route)
    manifest["validation"] = exporter.validate(path, manifest, exportable(loaded.model), loaded.tokenizer)
    write_manifest(folder, manifest)
    return manifest


@functools.lru_cache(maxsize=1)
def original_model(checkpoint: str) -> LoadedModel:
    """The unmodified transformers model: what litert-torch converts and every artifact is checked against."""
    return load_qa_model(checkpoint)


def artifact_input_names(format: str, path: Path) -> list[str]:
    """The inputs the peer's file itself declares (optimum's ONNX graph, the LiteRT signature)."""
    if format == "onnx":
        import onnx  # lazy: optional runtime package, only ONNX peers need it

        return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    from ai_edge_litert.interpreter import Interpreter  # lazy: optional runtime package, only LiteRT peers need it

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    return sorted(next(iter(signatures.values()))["inputs"])


def optimum_executorch_unavailable(run: PeerRun) -> str:
    return OPTIMUM_EXECUTORCH_MISSING_TASK


OPTIMUM_FP32 = "onnx-fp32-optimum"
ROUTES = (
    Route("onnx", "fp32", "pocketbert", True, our_export("onnx", "fp32"), "onnx-fp32-pocketbert"),
    Route("onnx", "fp32", "optimum-onnx", False, optimum_onnx_export, OPTIMUM_FP32, unavailable=optimum_missing),
    Route("onnx", "fp32", DEFAULTS_ROUTE, False, our_file_under_defaults("fp32"), "onnx-fp32-pocketbert-defaults",
          peer=False),
    Route("onnx", "int8", "pocketbert", True, our_export("onnx", "int8"), "onnx-int8-pocketbert"),
    Route("onnx", "int8", DEFAULTS_ROUTE, False, our_file_under_defaults("int8"), "onnx-int8-pocketbert-defaults",
          peer=False),
    Route("onnx", "int8", "optimum-onnx --avx2", False, optimum_onnx_quantize("avx2"), "onnx-int8-optimum-avx2",
          unavailable=optimum_missing),
    Route("onnx", "int8", "optimum-onnx --avx512_vnni", False, optimum_onnx_quantize("avx512_vnni"),
          "onnx-int8-optimum-avx512-vnni", unavailable=optimum_missing),
    Route("tflite", "fp32", "pocketbert", True, our_export("tflite", "fp32"), "tflite-fp32-pocketbert"),
    Route("tflite", "fp32", "litert-torch default", False, litert_torch_default, "tflite-fp32-litert-torch"),
    Route("executorch", "fp32", "pocketbert", True, our_export("executorch", "fp32"), "executorch-fp32-pocketbert"),
    Route("executorch", "fp32", "executorch documented XNNPACK recipe", False, executorch_documented_xnnpack,
          "executorch-fp32-documented"),
    Route("executorch", "fp32", "optimum-executorch --recipe xnnpack", False, None, "executorch-fp32-optimum",
          unavailable=optimum_executorch_unavailable),
)


# --- the run ------------------------------------------------------------------------------------------------

def run_peers(checkpoint: str, out: str | Path, seq_len: int = 384, formats=FORMATS, precisions=PRECISIONS,
              settings: BenchSettings = BenchSettings(), optimum_venv: str | Path = OPTIMUM_VENV) -> dict:
    """Export `checkpoint` (a folder or preset) by our route and each peer route of `formats` and `precisions`, time
    them all in one interleaved bench run at `seq_len` (model only), and write peers.json, report.md and peers.png
    into `out`."""
    for asked, known, what in ((formats, FORMATS, "format"), (precisions, PRECISIONS, "precision")):
        unknown = [a for a in asked if a not in known]
        if unknown:
            raise PocketbertError(f"unknown {what}(s) {unknown} for peers; choose from {', '.join(known)}")
    settings = replace(settings, seq_lens=(seq_len,), sweep=(), modes=("model",)).checked()
    if checkpoint not in PRESETS and not (Path(checkpoint) / "config.json").is_file():
        raise PocketbertError(f"'{checkpoint}' is neither a checkpoint folder (with config.json) nor a preset "
                              f"({', '.join(PRESETS)}); pass a QA checkpoint")
    if checkpoint not in PRESETS:
        # Every route loads this model: one that cannot be loaded (not an encoder, damaged weights or config) fails
        # here once, in one line, not once per route after minutes of exports.
        original_model(str(Path(checkpoint).resolve()))
    with new_output_folder(out) as out:
        artifacts = out / "artifacts"
        source = saved_checkpoint(checkpoint, artifacts) if checkpoint in PRESETS else str(Path(checkpoint).resolve())
        run = PeerRun(source, seq_len, artifacts, Path(optimum_venv))
        rows = export_routes(run, [r for r in ROUTES if r.format in formats and r.precision in precisions])
        timed = [r["artifact"] for r in rows if r["artifact"]]
        # The checkpoint itself in eager PyTorch times alongside: the reference every fp32 runtime should beat.
        bench = run_bench([source, *timed], out / "bench", settings, Baseline(None)) if timed else None
        results = peer_results(checkpoint, run, settings, rows, bench)
        write_json(out / PEERS_FILE, results)
        write_peer_report(results, out)
        return results


def export_routes(run: PeerRun, routes: list[Route]) -> list[dict]:
    """One row per route: its artifact folder and command, or why there is none ("not installed: ...",
    "unavailable: ...", "failed: ...", "skipped: ...")."""
    reasons = {r.folder: r.unavailable(run) for r in routes}
    # Our export of a format and precision is made only where some peer route can run beside it.
    compared = {(r.format, r.precision) for r in routes if r.peer and not r.ours and reasons[r.folder] is None}
    rows = []
    for route in tqdm(routes, desc="peer routes: export", unit="route"):
        reason = reasons[route.folder]
        if reason is None and (route.format, route.precision) not in compared:
            reason = "skipped: no peer route of this format and precision runs here"
        row = {"format": route.format, "precision": route.precision, "route": route.name, "ours": route.ours,
               "artifact": None, "command": None}
        if reason is None:
            try:
                row["command"] = route.build(run, run.folder / route.folder)
                row["artifact"] = str(run.folder / route.folder)
                run.made.add(route.folder)
            except PocketbertError as failure:  # ours refusing a model is a row too, beside the peers that ran
                reason = str(failure) if isinstance(failure, RouteFailed) else f"failed: {failure}"
        row["status"] = "ok" if reason is None else reason.split(":")[0].replace(" ", "_")
        row["reason"] = reason
        rows.append(row)
    return rows


def peer_results(checkpoint: str, run: PeerRun, settings: BenchSettings, rows: list[dict], bench: dict | None) -> dict:
    """The rows with bench's latency and size and each artifact's check against the original model; each peer's
    time over ours for the same format and precision."""
    measured = {r["artifact"]: r for r in (bench or {}).get("records", [])}
    if run.checkpoint in measured:
        rows = [{"format": EAGER_FORMAT, "precision": "fp32", "route": "transformers eager (the checkpoint)",
                 "ours": False, "artifact": run.checkpoint, "command": None, "status": "ok", "reason": None}, *rows]
    for row in rows:
        record = measured.get(row["artifact"], {})
        if record and record["status"] != "ok":
            row["status"], row["reason"] = record["status"], record["reason"]
        row["latency_ms"] = record.get("latency_ms")
        row["ms"] = (record.get("latency_ms") or {}).get(RATIO_STATISTIC)
        row["file_bytes"] = record.get("file_bytes")
        manifest = read_manifest(row["artifact"]) if row["artifact"] and row["format"] != EAGER_FORMAT else {}
        row["tool"] = (manifest.get("route") or {}).get("tool") or (
            f"pocketbert {manifest['versions'].get('pocketbert')}" if manifest else None)
        check = manifest.get("validation") or {}
        row["max_abs_diff"] = check.get("max_abs_diff")
        row["argmax_agreement"] = check.get("argmax_agreement")
        row["validation_passed"] = check.get("passed")
    for row in rows:
        mine = next((r for r in rows if r["ours"] and r["ms"] and (r["format"], r["precision"])
                     == (row["format"], row["precision"])), None)
        row["time_over_ours"] = row["ms"] / mine["ms"] if mine and row["ms"] and not row["ours"] else None
    return {"schema": PEERS_SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": checkpoint, "checkpoint_folder": run.checkpoint, "random_weights": checkpoint in PRESETS,
            "seq_len": run.seq_len, "machine": (bench or {}).get("machine") or machine_info(),
            "settings": {"warmup": settings.warmup, "runs": settings.runs, "threads": settings.threads,
                         "interleaved": True, "mode": "model", "statistic": RATIO_STATISTIC},
            "bench_results": f"bench/{RESULTS_NAME}" if bench else None, "versions": tool_versions(), "rows": rows}


# --- report -------------------------------------------------------------------------------------------------

def versus_ours(row: dict) -> str:
    if row["ours"]:
        return "(ours)"
    if row["time_over_ours"] is None:
        return "-"
    ratio = row["time_over_ours"]
    return f"ours {ratio:.2f}x faster" if ratio >= 1 else f"ours {1 / ratio:.2f}x slower"


def route_with_version(row: dict) -> str:
    """"optimum-onnx 0.1.0 --avx2" from the route "optimum-onnx --avx2" and its tool "optimum-onnx 0.1.0"."""
    tool = row["tool"]
    if not tool:
        return row["route"]
    package = tool.rsplit(" ", 1)[0]
    return row["route"].replace(package, tool, 1) if row["route"].startswith(package) else f"{row['route']} ({tool})"


def not_timed(row: dict) -> str:
    """The table cell of a row without a time; the whole reason is listed under the table."""
    if row["status"] == "not_installed":
        return NOT_INSTALLED
    return f"{row['status'].replace('_', ' ')} (below)" if row["reason"] else "-"


def render_peer_report(results: dict, plot: str | None) -> str:
    machine, settings, versions = results["machine"], results["settings"], results["versions"]
    weights = " (random weights: cost only)" if results["random_weights"] else ""
    rows = [[r["format"], r["precision"], route_with_version(r),
             f"{r['ms']:.2f}" if r["ms"] else not_timed(r), versus_ours(r),
             "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}",
             "-" if not r["file_bytes"] else f"{r['file_bytes'] / MB:.1f}"] for r in results["rows"]]
    commands = [f"- {r['format']} {r['precision']}, {r['route']}: `{r['command']}`" for r in results["rows"] if r["command"]]
    reasons = [f"- {r['format']} {r['precision']}, {r['route']}: {r['reason']}" for r in results["rows"] if not r["ms"]
               and r["reason"]]
    parts = [
        "# Our exports beside the standard routes",
        f"Checkpoint `{results['checkpoint']}`{weights}, seq {results['seq_len']}, model only. Created "
        f"{results['created']} on {machine.get('cpu')} ({machine.get('cores')} cores; instruction sets: "
        f"{' '.join(machine.get('cpu_features') or []) or 'not read'}). Every artifact timed in one interleaved run "
        f"(A B A B ...) in the same runtime (onnxruntime {versions.get('onnxruntime')}, ai-edge-litert "
        f"{versions.get('ai-edge-litert')}, torch {versions.get('torch')}) with the same runner and "
        f"{settings['threads']} threads, warm-up "
        f"{settings['warmup']} + {settings['runs']} runs; ms is the trimmed mean (middle 80% of runs). max |diff| is "
        "each artifact against the unmodified transformers model on real tokenised QA pairs at real tokens, in the "
        "artifact's runtime. Compare rows of this run only.",
        markdown_table(["format", "precision", "route", "ms", "vs ours", "max |diff| vs original", "size MB"], rows),
        "## Not timed\n" + "\n".join(reasons) if reasons else "",
        "## Commands\n" + "\n".join(commands) if commands else "",
        "Every timing statistic, load time and memory: [bench/report.md](bench/report.md)." if results["bench_results"]
        else "Nothing was timed: no peer route runs here.",
    ]
    if plot:
        parts.append(f"![{Path(plot).stem}]({plot})")
    return "\n\n".join(p for p in parts if p) + "\n"


def write_peer_plot(results: dict, out: Path) -> str | None:
    import matplotlib  # lazy: matplotlib adds ~0.7 s and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    timed = [r for r in results["rows"] if r["ms"]]
    if not timed:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(timed) + 1.5))
    ax.barh([f"{r['format']} {r['precision']}: {r['route']}" for r in timed], [r["ms"] for r in timed],
            color=["tab:blue" if r["ours"] else "tab:green" if r["format"] == EAGER_FORMAT else "tab:gray" for r in timed])
    ax.invert_yaxis()
    ax.set_xlabel(f"trimmed-mean ms, seq {results['seq_len']}, model only, {results['settings']['threads']} threads")
    ax.set_title("Ours (blue) beside the standard routes (grey) and eager PyTorch (green)")
    return save_figure(fig, out / "peers.png")


def write_peer_report(results: dict, out: Path) -> None:
    atomic_write_text(out / "report.md", render_peer_report(results, write_peer_plot(results, out)))
