"""Atomic outputs: a failed or interrupted stage leaves nothing half-written behind."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pocketbert.errors import PocketbertError


@contextmanager
def atomic_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `out` only if the block succeeds."""
    out = Path(out)
    if out.exists() and not force:
        raise PocketbertError(f"output '{out}' already exists; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a file through a temporary name and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "JSON file"):
    path = Path(path)
    if not path.is_file():
        raise PocketbertError(f"{what} '{path}' does not exist; check the path")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PocketbertError(f"{what} '{path}' is not valid JSON ({err}); regenerate it") from None


def gzip_size(path: Path) -> int:
    """Bytes after gzip level 6: of the file, or the sum over a directory artifact's files."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = 0
    for file in files:
        counter = _CountingSink()
        with open(file, "rb") as source, gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        total += counter.count
    return total


class _CountingSink:
    """A write-only file object that only counts bytes: the compressed stream is never kept."""

    def __init__(self):
        self.count = 0

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)

    def flush(self):
        pass
