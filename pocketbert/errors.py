"""Errors a user can fix. The CLI prints str(error) as one line and exits 2; no traceback."""
import contextlib
import importlib
import os
import sys
import tempfile


class PocketbertError(Exception):
    """A problem in the user's input or environment. The message names the problem and the fix."""


class NotRunnableHere(PocketbertError):
    """The artifact is valid but its runtime cannot execute on this machine (e.g. Core ML off macOS)."""


class KeptOnInterrupt(KeyboardInterrupt):
    """An interrupt after which some output was kept on purpose (a training run's checkpoints): `kept` says what,
    and with `resume` the CLI prints the command line that continues the run (the same one with --resume)."""

    def __init__(self, kept: str, resume: bool = False):
        super().__init__(kept)
        self.kept, self.resume = kept, resume


def first_line(err: BaseException) -> str:
    """A library exception in one short line, to quote inside our own one-line message."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def require_module(module: str, package: str):
    """Import an optional runtime package, or fail with the pip line that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise PocketbertError(
            f"the runtime package '{package}' is missing ({err}); install it with "
            f"`pip install {package}` (or run `make setup`)"
        ) from None


@contextlib.contextmanager
def native_chatter_held_back():
    """Hold back what the converters and runtimes print while they work (LiteRT's and XNNPACK's C++ logs, cpuinfo,
    oneDNN and absl notes, ai-edge-quantizer's prints): everything written to file descriptors 1 and 2 goes to a
    temporary file. Where the work fails with anything but a PocketbertError, that text is printed after all, so
    nothing a bug report needs is lost; our own one-line errors come after it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except PocketbertError:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                held.seek(0)
                sys.stderr.write(held.read().decode("utf-8", errors="replace"))
                sys.stderr.flush()
