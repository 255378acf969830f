"""The JSON manifest that travels with every artifact: the contract between export, bench and devices."""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import read_json, write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "pocketbert.manifest/1"
TRACKED_PACKAGES = ("pocketbert", "torch", "transformers", "executorch", "coremltools", "onnx", "onnxruntime",
                    "onnxscript", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao", "numpy")


def tool_versions() -> dict:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
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


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    return write_json(Path(folder) / MANIFEST_NAME, manifest)


def read_manifest(folder: str | Path) -> dict:
    """Read an artifact folder's manifest, with one-line errors for the ways it can be wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise PocketbertError(f"artifact folder '{folder}' {state}; create it with `pocketbert export`")
    manifest = read_json(folder / MANIFEST_NAME, "manifest")
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise PocketbertError(
            f"'{folder / MANIFEST_NAME}' has schema {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA}; re-export it"
        )
    if not (folder / manifest["artifact"]).exists():
        raise PocketbertError(f"artifact '{folder / manifest['artifact']}' named by the manifest is missing; re-export it")
    return manifest
