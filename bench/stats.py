"""Latency statistics over timed runs (warm-up runs already discarded by the caller)."""
from __future__ import annotations

import math

import numpy as np

from pocketbert.errors import PocketbertError

TRIM_FRACTION = 0.1  # the trimmed mean keeps the middle 80%, as the ExecuTorch benchmark apps report


def trimmed_mean(samples, trim: float = TRIM_FRACTION) -> float:
    """Mean after dropping floor(trim * n) samples from each end (all kept when that is 0)."""
    values = np.sort(np.asarray(samples, dtype=np.float64))
    cut = math.floor(trim * len(values))
    return float(values[cut:len(values) - cut].mean())


def latency_stats(samples_ms, warmup: int = 0) -> dict:
    """mean, p50, p90, p99 (linear interpolation between order statistics), trimmed mean, min, max, n."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise PocketbertError("no timed runs to summarise; pass --runs 1 or more")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "trimmed_mean": trimmed_mean(values), "min": float(values.min()), "max": float(values.max()),
            "n": int(values.size), "warmup": int(warmup)}
