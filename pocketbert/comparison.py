"""Compare an artifact's QA logits with reference logits. Pure numpy and no pocketbert imports: this file is
copied next to the device runner and runs on phones and boards as it is.
"""
from __future__ import annotations

import numpy as np


def compare_logits(outputs, expected, tolerance: float | None = None, mask=None) -> dict:
    """Compare (start, end) logits [batch, seq] with the expected (start, end).

    `mask` ([batch, seq], 1 = real token) limits the comparison to real tokens: logits at padding
    positions are never read by span decoding, and models differ there by design (ModernBERT's fully
    masked rows, for one).

    Returns max_abs_diff (over both outputs and every compared position; inf if either side has NaN/inf),
    the same per output, the share of rows whose start / end argmax agree, the row count, the tolerance
    and passed: max_abs_diff <= tolerance, or None when no tolerance applies (quantized artifacts).
    """
    diffs = {}
    agreement = {}
    rows = None
    for name, got, want in zip(("start", "end"), outputs, expected):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            raise ValueError(f"{name} logits have shape {got.shape}, expected {want.shape}")
        got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
        real = np.ones(got.shape, dtype=bool) if mask is None else np.asarray(mask).reshape(got.shape) != 0
        got, want = np.where(real, got, 0.0), np.where(real, want, 0.0)
        finite = np.isfinite(got).all() and np.isfinite(want).all()
        diffs[name] = float(np.abs(got - want).max()) if finite else float("inf")
        agreement[name] = float((np.where(real, got, -np.inf).argmax(-1)
                                 == np.where(real, want, -np.inf).argmax(-1)).mean())
        rows = len(got)
    max_abs_diff = max(diffs.values())
    return {
        "max_abs_diff": max_abs_diff,
        "max_abs_diff_start": diffs["start"],
        "max_abs_diff_end": diffs["end"],
        "argmax_agreement": agreement,
        "rows": rows,
        "tolerance": tolerance,
        "passed": None if tolerance is None else bool(max_abs_diff <= tolerance),
    }
