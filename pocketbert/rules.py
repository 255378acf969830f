"""The rulebook: what "right" means for an artifact, in one place.

Export validation, bench, eval, peers and every device target judge an artifact's outputs against the outputs of
the model it came from (the unmodified transformers model, eager PyTorch fp32) with `judge` below. Pure numpy and
no pocketbert imports: this file travels to phones and boards beside the device runner and runs there as it is.

The rule, by precision:
- fp32: every logit at a real-token position within FP32_TOLERANCE of the original's.
- below fp32 (fp16, int8, int4, a16w8, ...): no logit tolerance decides. The artifact is judged by its answers:
  on real QA windows, where the original model is confident (its best start or end logit beats the runner-up by
  CONFIDENT_MARGIN), the artifact must pick the same position in at least MIN_CONFIDENT_AGREEMENT of them. Fewer
  than MIN_CONFIDENT_POSITIONS confident positions give no verdict (random-weight test models are almost never
  confident), so this catches broken quantization of trained models without flagging test models.
"""
from __future__ import annotations

import numpy as np

# What a QA artifact returns, in this order, under these names (the platforms' loaders read them by name).
OUTPUT_NAMES = ("start_logits", "end_logits")

# precision -> the largest |logit difference| from the original model that still passes. Precisions not listed
# (fp16 among them: its logits move by 1e-2 or more on trained models) are judged by the answer rule.
TOLERANCES = {"fp32": 1e-4}
CONFIDENT_MARGIN = 1.0
MIN_CONFIDENT_AGREEMENT = 0.5
MIN_CONFIDENT_POSITIONS = 4
# How many real QA windows (generated dev questions that calibration never sees) the answer rule is judged on.
JUDGE_WINDOWS = 8
# Accuracy on a SQuAD set (pocketbert eval, and --eval on a device): below fp32 an artifact must keep this share of
# the fp32 source's F1 (MLPerf Mobile's rule for int8), and we aim for the goal.
MIN_F1_RETAINED = 0.93
F1_RETAINED_GOAL = 0.99


def tolerance_for(precision: str) -> float | None:
    """The logit tolerance that decides `precision`, or None where the answer rule decides."""
    return TOLERANCES.get(precision)


def rule_for(precision: str) -> str:
    """The rule that judges `precision`, in words (stored with every verdict)."""
    tolerance = tolerance_for(precision)
    if tolerance is not None:
        return f"max |logit diff| from the original model <= {tolerance:.0e} at real-token positions"
    return (f"same answer position as the original model in >= {MIN_CONFIDENT_AGREEMENT:.0%} of the positions where "
            f"it is confident (margin >= {CONFIDENT_MARGIN}); no verdict below {MIN_CONFIDENT_POSITIONS} such positions")


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


def confident_agreement(outputs, reference, mask) -> dict:
    """How often `outputs` pick the reference's start / end position where the reference is confident."""
    mask = np.asarray(mask)
    agreeing = confident = 0
    for got, expected in zip(outputs, reference):
        real = mask.reshape(np.shape(expected)) != 0
        expected = np.where(real, np.asarray(expected, np.float64), -np.inf)
        got = np.where(real, np.asarray(got, np.float64).reshape(expected.shape), -np.inf)
        top_two = np.sort(expected, axis=-1)[:, -2:]
        sure = top_two[:, 1] - top_two[:, 0] >= CONFIDENT_MARGIN
        confident += int(sure.sum())
        agreeing += int((got.argmax(-1) == expected.argmax(-1))[sure].sum())
    agreement = agreeing / confident if confident else None
    verdict = None if agreement is None or confident < MIN_CONFIDENT_POSITIONS else bool(agreement >= MIN_CONFIDENT_AGREEMENT)
    return {"confident_margin": CONFIDENT_MARGIN, "confident_positions": confident, "agreement": agreement,
            "min_agreement": MIN_CONFIDENT_AGREEMENT, "passed": verdict}


def judge(outputs, reference, precision: str, mask) -> dict:
    """The verdict on an artifact's (start, end) logits against the original model's on the same inputs.

    compare_logits' figures, plus "rule" (in words), "confident_answers" where the answer rule decides, and
    "passed": True, False, or None (no verdict: too few confident positions)."""
    check = compare_logits(outputs, reference, tolerance_for(precision), mask=mask)
    check["rule"] = rule_for(precision)
    check["precision"] = precision
    if check["tolerance"] is None:
        check["confident_answers"] = confident_agreement(outputs, reference, mask)
        check["passed"] = check["confident_answers"]["passed"]
    return check


def f1_verdict(precision: str, f1_retained: float | None) -> str:
    """The accuracy verdict on an artifact's F1 as a share of its fp32 source's ("-" for fp32 or no reference)."""
    if precision == "fp32" or f1_retained is None:
        return "-"
    if f1_retained < MIN_F1_RETAINED:
        return f"FAILS (< {MIN_F1_RETAINED:.0%} of fp32 F1)"
    if f1_retained < F1_RETAINED_GOAL:
        return f"passes, below the {F1_RETAINED_GOAL:.0%} goal"
    return "passes"


def verdict_reason(check: dict) -> str | None:
    """Why a judged artifact failed, or why no verdict was reached, in one line (None when it passed)."""
    if check["passed"]:
        return None
    answers = check.get("confident_answers")
    if answers is None:
        return (f"outputs differ from the original model's by {check['max_abs_diff']:.2e} "
                f"(> {check['tolerance']:.0e})")
    if check["passed"] is None:
        return (f"no verdict: only {answers['confident_positions']} positions where the original model is confident "
                f"(at least {MIN_CONFIDENT_POSITIONS} needed; random-weight models rarely are)")
    return (f"picks the original model's answer position in only {answers['agreement']:.0%} of the "
            f"{answers['confident_positions']} positions where it is confident (at least "
            f"{answers['min_agreement']:.0%} needed)")
