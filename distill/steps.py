"""Multi-step jobs (the demo, the ablation) that resume: a step whose output exists is reused, and each step's
time is kept in a JSON file across runs, so a report shows every step even after an interruption."""
from __future__ import annotations

import time
from pathlib import Path

from pocketbert.fsutil import read_json, write_json


class StepRunner:
    """Runs a job's named steps, reusing those already done and keeping each step's seconds in `timings_path`."""

    def __init__(self, timings_path: Path, tag: str):
        self.timings_path, self.tag = Path(timings_path), tag
        self.timings = read_json(self.timings_path, "step times") if self.timings_path.exists() else {}

    def __call__(self, name: str, done: Path, work) -> None:
        """Run `work()` unless `done` exists (outputs are written atomically, so existing means finished)."""
        if Path(done).exists():
            print(f"[{self.tag}] {name}: reusing {done}")
            return
        print(f"[{self.tag}] {name} ...")
        started = time.perf_counter()
        work()
        self.timings[name] = round(time.perf_counter() - started, 1)
        write_json(self.timings_path, self.timings)
        print(f"[{self.tag}] {name}: done in {self.timings[name]:.0f} s")
