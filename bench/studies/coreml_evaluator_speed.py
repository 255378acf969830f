"""How fast the Core ML reference evaluator (export/coreml_mil) runs a real-size model: a benchmark, not a test.

    .venv/bin/python bench/studies/coreml_evaluator_speed.py [ARTIFACT_FOLDER] [--seq-len 384] [--runs 3]

Without a folder it exports the distilbert-base preset (random weights) to Core ML fp16 at one length into
runs/coreml-evaluator-speed/ (once) and times that. Prints load time and each call's seconds. The figure
is the evaluator's speed on this machine, never Core ML's.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pocketbert.export import export_model
from pocketbert.export import load_coreml_program as load_program
from pocketbert.manifest import MANIFEST_NAME, read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.reference import validation_inputs

DEFAULT_FOLDER = Path("runs/coreml-evaluator-speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = args.folder or DEFAULT_FOLDER / f"distilbert-base-fp16-{args.seq_len}"
    if args.folder is None and not (folder / MANIFEST_NAME).is_file():
        export_model("distilbert-base", "coreml", folder, precision="fp16", seq_lens=(args.seq_len,), force=True)
    manifest = read_manifest(folder)

    started = time.perf_counter()
    program = load_program(folder / manifest["artifact"])
    load_s = time.perf_counter() - started
    names = [spec["name"] for spec in manifest["inputs"]]
    row = {name: value[:1] for name, value in validation_inputs(load_tokenizer(folder), names, args.seq_len).items()}
    calls = []
    for _ in range(args.runs):
        started = time.perf_counter()
        program(row)
        calls.append(time.perf_counter() - started)
    print(f"{folder}: {manifest['source'].get('architecture', '?')} {manifest['precision']}, seq {args.seq_len}, "
          f"{len(program.steps)} ops; load {load_s:.1f} s; calls {', '.join(f'{s:.2f}' for s in calls)} s "
          f"(best {min(calls):.2f} s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
