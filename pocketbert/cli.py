"""The `pocketbert` command: one subcommand per stage, each a thin shell over an importable function."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from pocketbert.errors import PocketbertError

# Each stage's cli module adds its own subcommands; registering by module keeps stages independent.
STAGE_CLIS = (
    "pocketbert.distill.data_cli",
    "pocketbert.distill.cli",
    "pocketbert.export.cli",
    "pocketbert.bench.cli",
    "pocketbert.mobile_harness.cli",
    "pocketbert.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketbert",
        description="Distill a BERT-family QA model, export it for phones, and measure it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in STAGE_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # a stage not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Offline by design: never let transformers reach for a hub that is not there.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except PocketbertError as err:
        print(f"pocketbert: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pocketbert: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
