"""The `pocketbert` command: one subcommand per stage, each a thin shell over an importable function."""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import warnings

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import interrupt_signal, interrupts_handled

# Each stage's cli module adds its own subcommands; registering by module keeps stages independent.
STAGE_CLIS = (
    "pocketbert.data.cli",
    "pocketbert.distill.cli",
    "pocketbert.export.cli",
    "pocketbert.bench.cli",
    "pocketbert.mobile_harness.cli",
    "pocketbert.demo.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketbert",
        description="Distill a BERT-family QA model, export it for phones, and measure it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in STAGE_CLIS:
        # Every stage ships with the package: one that does not import is a broken install, never a stage to skip.
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(f"the pocketbert stage '{module_name}' cannot be imported ({err}); "
                              f"the install is broken: run `make setup`") from err
        module.register(sub)
    return parser


# Import-time chatter from the stack that says nothing about the user's run (CUDA-only kernels missing on
# a CPU machine, deprecations inside torch's own exporters); real errors still surface.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx._internal.exporter._registration",
                 "coremltools", "torch._export")


def quiet_third_party() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|coremltools|executorch|litert_torch)")


# Output locations a user picked badly: read-only, not permitted, a file where a folder must go, a full disk.
USER_FIXABLE_OS_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT)


def main(argv: list[str] | None = None) -> int:
    # Offline by design: never let transformers reach for a hub that is not there.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    args = build_parser().parse_args(argv)
    try:
        with interrupts_handled():
            result = args.func(args)
    except PocketbertError as err:
        print(f"pocketbert: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signum = interrupt_signal()
        print(f"pocketbert: interrupted ({signal.Signals(signum).name}); nothing half-written was kept", file=sys.stderr)
        return 128 + signum
    except OSError as err:
        if err.errno not in USER_FIXABLE_OS_ERRORS:
            raise
        where = f" '{err.filename}'" if err.filename else ""
        print(f"pocketbert: error: {err.strerror}{where}; outputs need a writable folder with free space, "
              f"not one under a file", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
