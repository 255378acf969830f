"""Errors a user can fix. The CLI prints str(error) as one line and exits 2; no traceback."""


class PocketbertError(Exception):
    """A problem in the user's input or environment. The message names the problem and the fix."""


class NotRunnableHere(PocketbertError):
    """The artifact is valid but its runtime cannot execute on this machine (e.g. Core ML off macOS)."""


def first_line(err: BaseException) -> str:
    """A library exception in one short line, to quote inside our own one-line message."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def require_module(module: str, package: str):
    """Import an optional runtime package, or fail with the pip line that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise PocketbertError(
            f"the runtime package '{package}' is missing ({err}); install it with "
            f"`pip install {package}` (or run `make setup`)"
        ) from None
