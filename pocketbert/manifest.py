"""The JSON manifest that travels with every artifact: the contract between export, bench and devices."""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import read_json, write_json
from pocketbert.tasks import QUESTION_ANSWERING, TASKS, Task, task_named

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "pocketbert.manifest/1"
TRACKED_PACKAGES = ("pocketbert", "torch", "transformers", "executorch", "coremltools", "onnx", "onnxruntime",
                    "onnxscript", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao", "numpy")


def tool_versions() -> dict:
    """Python, the platform and each tracked package's installed version (None if absent): recorded in manifests
    and results so a number can be traced to the stack that produced it."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def artifact_digest(path: str | Path) -> tuple[int, str]:
    """(bytes, sha256) of a file, or of a directory artifact such as .mlpackage (files in sorted order)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest, total = hashlib.sha256(), 0
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                total += len(block)
    return total, digest.hexdigest()


def io_entries(input_names, input_dtype: str, batch, seq, output_names=QUESTION_ANSWERING.outputs,
               output_axis=None) -> tuple[list[dict], list[dict]]:
    """The manifest's "inputs" and "outputs": names, dtypes, shapes (a string names a symbolic axis). Outputs run
    over the sequence unless `output_axis` (a classifier's label count) says otherwise."""
    inputs = [{"name": name, "dtype": input_dtype, "shape": [batch, seq]} for name in input_names]
    last = seq if output_axis is None else output_axis
    outputs = [{"name": name, "dtype": "float32", "shape": [batch, last]} for name in output_names]
    return inputs, outputs


def build_manifest(folder: str | Path, artifact: str | Path, *, format: str, backend: str | None, precision: str,
                   inputs: list[dict], outputs: list[dict], sequence: dict, source: dict, runtime_settings: dict,
                   task: str = QUESTION_ANSWERING.name, **entries) -> dict:
    """The one way a manifest is made (export and bench peers both use it): the contract's fixed keys, the
    artifact's size and sha256, the tool versions and the time, plus the writer's own `entries` (graph facts,
    options, route, ...). Validation is added by the writer once it has run."""
    folder, artifact = Path(folder), Path(artifact)
    size, sha256 = artifact_digest(artifact)
    return {
        "schema": MANIFEST_SCHEMA,
        "task": task,
        "format": format,
        "backend": backend,
        "precision": precision,
        "artifact": artifact.relative_to(folder).as_posix(),
        "inputs": inputs,
        "outputs": outputs,
        "sequence": sequence,
        "runtime_settings": runtime_settings,
        "parameters": source.get("parameters"),
        "file_bytes": size,
        "sha256": sha256,
        "source": source,
        **entries,
        "versions": tool_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def manifest_task(manifest: dict) -> Task:
    """The task an artifact was exported for (manifests from before tasks existed were all question-answering)."""
    return task_named(manifest.get("task", QUESTION_ANSWERING.name))


def output_names(manifest: dict) -> list[str]:
    """The artifact's outputs by name, in the order every runner returns them."""
    return [entry["name"] for entry in manifest["outputs"]]


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write `manifest` as the folder's manifest.json (atomically, so a reader never sees half of one); returns its path."""
    return write_json(Path(folder) / MANIFEST_NAME, manifest)


# --no-verify (bench, eval, device run) turns the sha256 check off for a whole command, including code that reads
# manifests itself (device bundles): artifact_verification(False) around it.
# A child process that a command starts (bench's fresh-process load probe) inherits the choice through VERIFY_ENV.
VERIFY_ENV = "POCKETBERT_VERIFY_ARTIFACTS"
_VERIFY = contextvars.ContextVar("pocketbert_verify_artifacts", default=os.environ.get(VERIFY_ENV, "1") != "0")
# artifact path -> (what os.stat said, sha256): a file hashed once per process, again only if it changed.
_VERIFIED: dict[str, tuple[tuple, str]] = {}


def verification_env() -> dict[str, str]:
    """The environment entry that hands this command's --no-verify choice to a child process."""
    return {VERIFY_ENV: "1" if _VERIFY.get() else "0"}


@contextlib.contextmanager
def artifact_verification(enabled: bool = True):
    """Within the block read_manifest checks each artifact's sha256 only if `enabled` (--no-verify)."""
    token = _VERIFY.set(enabled)
    try:
        yield
    finally:
        _VERIFY.reset(token)


def read_manifest(folder: str | Path, verify: bool | None = None) -> dict:
    """Read an artifact folder's manifest, with one-line errors for the ways it can be wrong: missing, not JSON,
    malformed, naming a missing file or an unknown format, or (`verify`, the default unless --no-verify) naming a
    file whose sha256 is not the one recorded at export. Every reader (bench, eval, op-profile, device run) comes
    through here, so a changed model file is never scored, timed or pushed as if it were the exported one."""
    from pocketbert.export.registry import format_class  # lazy: circular (pocketbert.export.registry imports pocketbert.manifest)

    folder = Path(folder)
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise PocketbertError(f"artifact folder '{folder}' {state}; create it with `pocketbert export`")
    path = folder / MANIFEST_NAME
    manifest = read_json(path, "manifest")
    if not isinstance(manifest, dict):
        raise PocketbertError(f"'{path}' is not a manifest (a JSON {type(manifest).__name__}, not an object); "
                              "re-export the artifact")
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise PocketbertError(
            f"'{path}' has schema {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA}; re-export it"
        )
    problem = manifest_problem(manifest)
    if problem:
        raise PocketbertError(f"'{path}' is malformed ({problem}); re-export the artifact")
    if not (folder / manifest["artifact"]).exists():
        raise PocketbertError(f"artifact '{folder / manifest['artifact']}' named by the manifest is missing; re-export it")
    format_class(manifest["format"])  # an unknown format is one line here, before any file is read
    if _VERIFY.get() if verify is None else verify:
        verify_artifact(folder, manifest)
    return manifest


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the keys every reader relies on, in a few words, or None."""
    artifact = manifest.get("artifact")
    if not isinstance(artifact, str) or not artifact or Path(artifact).is_absolute() or ".." in Path(artifact).parts:
        return f'"artifact" must name a file inside the folder, not {artifact!r}'
    for key in ("format", "precision"):
        if not isinstance(manifest.get(key), str):
            return f'"{key}" must be a string, not {manifest.get(key)!r}'
    if manifest.get("task", QUESTION_ANSWERING.name) not in TASKS:
        return f'"task" must be one of {", ".join(TASKS)}, not {manifest.get("task")!r}'
    if manifest.get("backend") is not None and not isinstance(manifest["backend"], str):
        return f'"backend" must be a string or null, not {manifest["backend"]!r}'
    for key in ("inputs", "outputs"):
        entries = manifest.get(key)
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                    for e in entries):
            return f'"{key}" must be a list of {{"name": ..., "dtype": ..., "shape": ...}} entries'
    if not manifest["inputs"]:
        return '"inputs" is empty'
    sequence = manifest.get("sequence")
    if not isinstance(sequence, dict):
        return f'"sequence" must be an object with dynamic, min, max and lengths, not {sequence!r}'
    lengths = sequence.get("lengths")
    if (not isinstance(sequence.get("dynamic"), bool) or not _is_int(sequence.get("min"))
            or not _is_int(sequence.get("max")) or not isinstance(lengths, list) or not lengths
            or not all(_is_int(n) and n > 0 for n in lengths) or sequence["min"] > sequence["max"]):
        return f'"sequence" needs dynamic (true/false), min <= max and a non-empty list of lengths, not {sequence!r}'
    for key, kind in (("file_bytes", "an integer"), ("sha256", "a hex string"), ("source", "an object"),
                      ("options", "an object"), ("accepted_lengths", "an object"), ("validation", "an object")):
        value = manifest.get(key)
        ok = {"an integer": _is_int, "a hex string": lambda v: isinstance(v, str) and len(v) == 64,
              "an object": lambda v: isinstance(v, dict)}[kind](value)
        if value is not None and not ok:
            return f'"{key}" must be {kind}, not {value!r}'[:200]
    return None


def _stat_signature(path: Path) -> tuple:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(f), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for f, s in ((f, f.stat()) for f in files))


def verify_artifact(folder: str | Path, manifest: dict) -> None:
    """One line naming the file when the artifact's sha256 is not the manifest's (the file changed or was cut short
    after export). A manifest that records no sha256 (written by hand) has nothing to check against."""
    expected = manifest.get("sha256")
    if expected is None:
        return
    path = Path(folder) / manifest["artifact"]
    signature = _stat_signature(path)
    key = str(path.resolve())
    cached = _VERIFIED.get(key)
    if cached is not None and cached[0] == signature:
        actual = cached[1]
    else:
        actual = artifact_digest(path)[1]
        _VERIFIED[key] = (signature, actual)
    if actual != expected:
        raise PocketbertError(f"artifact '{path}' is not the file that was exported (its sha256 differs from the "
                              f"manifest's: {actual[:12]}... instead of {expected[:12]}...; it changed or was cut "
                              "short); re-export it with `pocketbert export` (bench, eval and device run take "
                              "--no-verify to use it as it is)")
