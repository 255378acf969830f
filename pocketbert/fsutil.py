"""Atomic outputs: a failed, interrupted or killed stage leaves nothing half-written behind."""
from __future__ import annotations

import fcntl
import glob
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pocketbert.errors import PocketbertError, first_line

# --- interruption: Ctrl-C and SIGTERM end a stage the same way, and are never lost ----------------------

_received_signals: list[int] = []
_last_signal: int | None = None


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
    global _last_signal
    _received_signals.clear()
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # The record belongs to this block: work after it (the next API call in the same process) starts clean,
        # and interrupt_signal() still says what ended it.
        _last_signal = _received_signals[-1] if _received_signals else None
        _received_signals.clear()


def raise_if_interrupted() -> None:
    """Re-raise an interrupt that arrived while code that swallows exceptions was running."""
    if _received_signals:
        raise KeyboardInterrupt


def interrupt_signal() -> int:
    """The signal that interrupted the last interrupts_handled block (SIGINT when none was recorded: a plain
    KeyboardInterrupt)."""
    if _received_signals:
        return _received_signals[-1]
    return _last_signal if _last_signal is not None else signal.SIGINT


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
    """The one-line refusals atomic_dir gives, available before a long command's work: `out` is the current folder
    (or holds it), `out`'s folder cannot be made or written into, or `out` is a file or a link (--force replaces an
    earlier output folder, never a file of the user's). Returns `out` normalised (`a/./b` is `a/b`)."""
    given = str(out)
    out = Path(os.path.normpath(out))
    if out.name in ("", ".", "..") or _holds_cwd(out):
        raise PocketbertError(f"output '{given}' is the current folder or one that holds it, which cannot be replaced; "
                              f"name a new folder for the output, e.g. --out {os.path.join(given, 'pocketbert-out')}")
    folder = make_dirs(out.parent)
    if out.is_symlink():
        raise PocketbertError(f"output '{out}' is a symbolic link; pass the folder it points to "
                              f"('{os.path.realpath(out)}') or a new folder")
    if out.exists() and not out.is_dir():
        raise PocketbertError(f"output '{out}' is a file, not a folder; choose a folder path for the output")
    if out.is_dir() and os.path.ismount(out):
        raise PocketbertError(f"output '{out}' is a mount point, which cannot be replaced; name a new folder inside it")
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".pocketbert-check-"))
    except OSError as err:
        raise _unwritable(folder, err) from None
    return out


@contextmanager
def new_output_folder(folder: str | Path) -> Iterator[Path]:
    """make_dirs for a command that fills its folder as it goes (bench, peers): a new folder, an empty one, or one
    pocketbert wrote; a folder this call created is removed again if the command fails or is interrupted, so a failed
    run leaves nothing behind (an existing folder is left as it was)."""
    folder = check_replaceable(folder, force=False, update=True)  # never a user's own non-empty folder
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


def _holds_cwd(out: Path) -> bool:
    """`out` is the working folder or one of its parents: replacing it would pull the folder from under the run."""
    cwd, target = os.path.realpath(os.getcwd()), os.path.realpath(out)
    return cwd == target or cwd.startswith(target.rstrip(os.sep) + os.sep)


# --- what --force may replace: only a folder pocketbert wrote ---------------------------------------------

# A folder pocketbert wrote holds one of these records, whose "schema" (or, for data sets, "generator") is one of
# pocketbert's: an artifact's manifest.json, a bench/eval/op-profile/gemm results.json or eval.json, a data set's
# data.json, a student checkpoint's student.json. A training run is known by its own files (distill/trainer.py's
# RUN_FILE, METRICS_FILE, CHECKPOINTS). --force empties no other folder.
OUTPUT_RECORDS = ("manifest.json", "results.json", "eval.json", "data.json", "student.json", "peers.json",
                  "rescore.json", "gemm.json", "op_profile.json", "onnx_int8_settings.json")
RUN_MARKERS = ("run.json", "metrics.jsonl", "checkpoints")
_POCKETBERT_RECORD = re.compile(rb'"(schema|generator)"\s*:\s*"pocketbert\.')


def written_by_pocketbert(folder: str | Path) -> str | None:
    """The name of the file that marks `folder` as one pocketbert wrote, or None."""
    folder = Path(folder)
    for name in OUTPUT_RECORDS:
        record = folder / name
        if record.is_file() and not record.is_symlink():
            try:
                with open(record, "rb") as handle:
                    head = handle.read(1 << 20)  # the key is near the top; a truncated record still counts
            except OSError:
                continue
            if _POCKETBERT_RECORD.search(head):
                return name
    return next((name for name in RUN_MARKERS if (folder / name).exists()), None)


def check_replaceable(out: str | Path, force: bool, update: bool = False) -> Path:
    """Up front, before a command's work: `out` may be written, i.e. it is new or empty, or a folder pocketbert wrote
    (written_by_pocketbert) whose every folder can be emptied and which `force` lets be replaced or `update` (a
    command that adds files to a folder, such as eval) lets be added to. One line naming the problem and the fix
    otherwise."""
    out = check_output_path(out)
    if not out.exists():
        return out
    try:
        empty = not any(out.iterdir())
    except OSError as err:
        raise PocketbertError(f"output '{out}' cannot be read ({err.strerror}); choose another --out") from None
    if not empty and written_by_pocketbert(out) is None:
        refused = "nothing is added to it" if update else "--force will not empty it"
        raise PocketbertError(
            f"output '{out}' already exists and is not a folder pocketbert wrote (it has no pocketbert "
            f"{', '.join(OUTPUT_RECORDS[:3])} or data.json), so {refused}; choose a new --out "
            "(or move that folder away yourself)")
    if not force and not update:
        raise PocketbertError(f"output '{out}' already exists; pass --force to overwrite it")
    for root, _, _ in os.walk(out):
        if not os.access(root, os.W_OK | os.X_OK):
            raise PocketbertError(f"output '{out}' cannot be replaced: '{root}' is read-only; make it writable "
                                  f"(chmod -R u+w {shlex.quote(str(out))}) or choose another --out")
    return out


# --- one writer per output: a lock file beside it --------------------------------------------------------

# The command line a lock names (the CLI sets it; a library caller gets its own argv).
current_command: str | None = None


def _lock_holder_text() -> str:
    command = current_command or shlex.join(sys.argv)
    return f"pid {os.getpid()}: {command}".replace("\n", " ")[:300]


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive flock on `.NAME.lock` beside `out` while it is written: a second writer of the same output
    is refused in one line naming the holder (pid and command). The kernel drops a flock when its process dies, so
    a lock file left by kill -9 blocks nobody: the next writer takes it, and removes it when done."""
    path = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise _unwritable(out.parent, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 400).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise PocketbertError(f"output '{out}' is being written right now by {holder}; wait for that run to "
                                  "finish, or choose another --out") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this file as we opened it: take the lock on the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _lock_holder_text().encode())
        yield
    finally:
        try:
            os.unlink(path)  # while still holding it: whoever opened this file retries on a fresh one
        except OSError:
            pass
        os.close(fd)


def _link_or_copy(source: str, target: str) -> None:
    """copytree's copy for an update: a hard link (free for a cached artifact of hundreds of MB), else a copy.
    Every writer replaces a file by renaming a new one over it, so the previous folder's files are never changed."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@contextmanager
def atomic_dir(out: str | Path, force: bool = False, update: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `out` only if the block succeeds (and no interrupt
    arrived meanwhile).

    `force`: an existing `out` may be replaced, if pocketbert wrote it (written_by_pocketbert). `update`: the
    temporary folder starts as a copy of an existing `out` (files hard-linked), so a command that adds to a folder
    (eval into a bench folder) changes it all at once or not at all; every file in it must be written by renaming a
    new file into place. One writer at a time per `out` (output_lock)."""
    out = check_output_path(out)
    with output_lock(out):
        remove_stale_temps(out)
        check_replaceable(out, force, update)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if update and out.is_dir():
                shutil.copytree(out, tmp, symlinks=True, copy_function=_link_or_copy)
            else:
                tmp.mkdir()
        except (OSError, shutil.Error) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, shutil.Error):
                raise PocketbertError(f"cannot copy '{out}' to update it ({first_line(err)}); choose a new --out") from None
            raise _unwritable(out.parent, err) from None
        try:
            yield tmp
            raise_if_interrupted()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _swap_into_place(tmp, out)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out` (the previous `out` moved aside, then removed), with Ctrl-C and SIGTERM held back for
    the two renames; a rename the file system refuses puts everything back and is one line."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        step = "move the previous output aside"
        try:
            if out.exists():
                out.rename(old)
            step = "rename the new output into place"
            tmp.rename(out)
        except OSError as err:
            if old.exists() and not out.exists():
                old.rename(out)
            shutil.rmtree(tmp, ignore_errors=True)
            raise PocketbertError(f"cannot {step} at '{out}' ({err.strerror}); nothing was changed: choose a "
                                  "writable --out") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
        if old.exists():
            print(f"pocketbert: note: the previous '{out}' was moved to '{old}' and could not be fully removed; "
                  "delete it yourself", file=sys.stderr)


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
    """Write `data` as indented JSON, atomically (a reader sees the old file or the whole new one); returns the path."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "JSON file"):
    """The parsed JSON at `path`; a missing file, a folder or invalid JSON is a one-line PocketbertError naming
    `what` it was meant to be."""
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
