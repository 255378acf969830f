"""Export formats by name. Each lives in its own module under formats/ and registers itself on import."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from pocketbert.errors import PocketbertError, first_line
from pocketbert.export import formats
from pocketbert.manifest import artifact_digest

FORMATS: dict[str, type] = {}


def register_format(cls):
    """Class decorator: make an Exporter subclass available under its `name`; returns the class unchanged."""
    FORMATS[cls.name] = cls
    return cls


def _discover() -> None:
    # Format modules import their runtime packages lazily, so importing all of them stays cheap.
    for info in pkgutil.iter_modules(formats.__path__):
        importlib.import_module(f"{formats.__name__}.{info.name}")


def format_names() -> list[str]:
    """Every export format's name, sorted: the choices of --format (imports each format module once)."""
    _discover()
    return sorted(FORMATS)


def format_class(name: str) -> type:
    """The Exporter subclass for a format name: its ClassVars (runtime, suffix, precisions, ...) are the facts."""
    _discover()
    if name not in FORMATS:
        raise PocketbertError(f"unknown export format '{name}'; choose one of {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def get_format(name: str):
    """A new exporter instance for format `name` (an unknown name is refused by format_class)."""
    return format_class(name)()


def load_artifact(folder: str | Path, manifest: dict, threads: int | None = None):
    """An artifact folder's model in its own runtime, as a Runner (NotRunnableHere where that runtime cannot run
    here). A damaged model file is one line naming it, not the runtime's parser traceback."""
    path = Path(folder) / manifest["artifact"]
    try:
        return get_format(manifest["format"]).load(path, manifest, threads)
    except PocketbertError:
        raise
    except Exception as err:  # each runtime raises its own types for a file it cannot parse
        if artifact_digest(path)[1] != manifest.get("sha256"):
            damage = "its sha256 differs from the manifest's: the file changed or was cut short"
        else:
            damage = first_line(err)
        raise PocketbertError(f"artifact '{path}' cannot be loaded ({damage}); re-export it with pocketbert export") from None
