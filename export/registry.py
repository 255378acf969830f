"""Export formats by name. Each lives in its own module under formats/ and registers itself on import."""
from __future__ import annotations

import importlib
import pkgutil

from pocketbert.errors import PocketbertError

FORMATS: dict[str, type] = {}


def register_format(cls):
    FORMATS[cls.name] = cls
    return cls


def _discover() -> None:
    # Format modules import their runtime packages lazily, so importing all of them stays cheap.
    from pocketbert.export import formats

    for info in pkgutil.iter_modules(formats.__path__):
        importlib.import_module(f"{formats.__name__}.{info.name}")


def format_names() -> list[str]:
    _discover()
    return sorted(FORMATS)


def format_class(name: str) -> type:
    """The Exporter subclass for a format name: its ClassVars (runtime, suffix, precisions, ...) are the facts."""
    _discover()
    if name not in FORMATS:
        raise PocketbertError(f"unknown export format '{name}'; choose one of {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def get_format(name: str):
    return format_class(name)()
