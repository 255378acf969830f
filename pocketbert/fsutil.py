"""Atomic outputs: a failed, interrupted or killed stage leaves nothing half-written behind."""
from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pocketbert.errors import PocketbertError


# --- interruption: Ctrl-C and SIGTERM end a stage the same way, and are never lost ----------------------

_received_signals: list[int] = []


def _raise_interrupt(signum, frame) -> None:
    _received_signals.append(signum)
    raise KeyboardInterrupt


@contextmanager
def interrupts_handled() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM both raise KeyboardInterrupt, so every temp output is
    removed on the way out, and both are remembered: library code that swallows the exception (a jax
    callback inside the TFLite converter once did) cannot make the stage carry on, because
    `raise_if_interrupted` and every atomic output's commit check the record. The previous handlers come
    back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    _received_signals.clear()
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def raise_if_interrupted() -> None:
    """Re-raise an interrupt that arrived while code that swallows exceptions was running."""
    if _received_signals:
        raise KeyboardInterrupt


def interrupt_signal() -> int:
    """The signal that interrupted this process (SIGINT when none was recorded: a plain KeyboardInterrupt)."""
    return _received_signals[-1] if _received_signals else signal.SIGINT


# --- atomic outputs ------------------------------------------------------------------------------------

def make_dirs(folder: str | Path) -> Path:
    """mkdir -p, or one line naming the folder when it cannot be made (read-only place, a file in the way)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise PocketbertError(f"cannot create the output folder '{folder}': '{blocker}' is a file; "
                                  f"choose an output path that is not under a file") from None
        raise PocketbertError(f"cannot create the output folder '{folder}' ({err.strerror}); "
                              f"choose a writable location") from None
    return folder


def _unwritable(folder: Path, err: OSError) -> PocketbertError:
    return PocketbertError(f"cannot write into '{folder}' ({err.strerror}); choose a writable output folder")


def check_output_path(out: str | Path) -> Path:
    """The one-line refusals atomic_dir gives, available before a long command's work: `out`'s folder cannot be made
    or written into, or `out` is a file (--force replaces an earlier output folder, never a file of the user's)."""
    out = Path(out)
    folder = make_dirs(out.parent)
    if out.exists() and not out.is_dir():
        raise PocketbertError(f"output '{out}' is a file, not a folder; choose a folder path for the output")
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".pocketbert-check-"))
    except OSError as err:
        raise _unwritable(folder, err) from None
    return out


@contextmanager
def new_output_folder(folder: str | Path) -> Iterator[Path]:
    """make_dirs for a command that fills its folder as it goes: a folder this call created is removed again if the
    command fails or is interrupted, so a failed run leaves nothing behind (an existing folder is left as it was)."""
    folder = Path(folder)
    existed = folder.exists()
    made = make_dirs(folder)
    try:
        yield made
    except BaseException:
        if not existed:
            shutil.rmtree(made, ignore_errors=True)
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(out: Path) -> None:
    """Remove the `.NAME.tmp-PID` / `.NAME.old-PID` siblings of `out` that a killed process left behind.

    SIGKILL (or a power cut) gives a process no chance to clean up; the next run writing the same output
    does it. A `.old-PID` (the previous output, moved aside for the swap) comes back as `out` when the
    swap did not finish. Temps of live processes, e.g. a concurrent run, are left alone.
    """
    prefix = f".{out.name}."
    for sibling in out.parent.glob(f"{glob.escape(prefix)}*-*"):
        kind, _, pid = sibling.name[len(prefix):].rpartition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            sibling.rename(out)
        elif sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


@contextmanager
def atomic_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `out` only if the block succeeds (and no interrupt
    arrived meanwhile)."""
    out = check_output_path(out)
    remove_stale_temps(out)
    if out.exists() and not force:
        raise PocketbertError(f"output '{out}' already exists; pass --force to overwrite it")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as err:
        raise _unwritable(out.parent, err) from None
    try:
        yield tmp
        raise_if_interrupted()
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
    make_dirs(path.parent)
    remove_stale_temps(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as err:
        raise PocketbertError(f"cannot write '{path}' ({err.strerror}); choose a writable output folder") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "JSON file"):
    path = Path(path)
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise PocketbertError(f"{what} '{path}' {state}; check the path")
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
