"""The `pocketbert` command: one subcommand per stage, each a thin shell over an importable function."""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import shlex
import signal
import sys
import warnings

from pocketbert import fsutil
from pocketbert.errors import KeptOnInterrupt, PocketbertError
from pocketbert.fsutil import interrupt_signal, interrupts_handled

# Each stage's cli module adds its own subcommands; registering by module keeps stages independent. Each stage's
# cli.py imports its stage inside the subcommand that runs it, so `pocketbert --help` stays fast.
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
                 "coremltools", "torch._export", "absl")
# Libraries that log their notes through the root logger (litert-torch's "enable_x64=False downcasts ..."): their
# records below ERROR are dropped there; their errors, and every record of ours, still print.
ROOT_LOGGING_LIBRARIES = re.compile(r"[/\\](litert_torch|ai_edge_litert|ai_edge_quantizer|tensorflow)[/\\]")
# Set before any of them is imported: TensorFlow's C++ logs (under litert-torch) at WARNING and above only.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}


class _LibraryNotesFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not ROOT_LOGGING_LIBRARIES.search(record.pathname or "")


def quiet_third_party() -> None:
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    root = logging.getLogger()
    if not any(isinstance(f, _LibraryNotesFilter) for f in root.filters):
        root.addFilter(_LibraryNotesFilter())
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(torch|coremltools|executorch|litert_torch|ai_edge_litert|ai_edge_quantizer)")


# Output locations a user picked badly: read-only, not permitted, a file where a folder must go, a full disk.
USER_FIXABLE_OS_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT)


def resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted run: the same one, with --resume instead of --force."""
    args = [arg for arg in argv if arg != "--force"]
    return shlex.join(["pocketbert", *args, *([] if "--resume" in args else ["--resume"])])


def main(argv: list[str] | None = None) -> int:
    # Offline by design: never let transformers reach for a hub that is not there.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    args = build_parser().parse_args(argv)
    fsutil.current_command = shlex.join(["pocketbert", *(sys.argv[1:] if argv is None else argv)])  # lock holders
    try:
        with interrupts_handled():
            result = args.func(args)
    except PocketbertError as err:
        print(f"pocketbert: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        signum = interrupt_signal()
        kept = interrupt.kept if isinstance(interrupt, KeptOnInterrupt) else "nothing half-written was kept"
        if isinstance(interrupt, KeptOnInterrupt) and interrupt.resume:
            kept += f"; continue with: {resume_command(sys.argv[1:] if argv is None else argv)}"
        print(f"pocketbert: interrupted ({signal.Signals(signum).name}); {kept}", file=sys.stderr)
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
