"""The rulebook: what "right" means for an artifact, in one place.

Export validation, bench, eval, peers and every device target judge an artifact's outputs against the outputs of
the model it came from (the unmodified transformers model, eager PyTorch fp32) with `judge` below. Pure numpy and
no pocketbert imports: this file travels to phones and boards beside the device runner and runs there as it is.
The task (pocketbert/tasks.py) says what the outputs are: (start, end) logits over token positions for QA, where
padding positions are never compared, or logits over the labels for classification.

The rule, by precision:
- fp32: every compared logit within FP32_TOLERANCE of the original's.
- below fp32 (fp16, int8, int4, a16w8, ...): no logit tolerance decides. The artifact is judged by its choices
  (answer positions, labels): on real inputs, where the original model is confident (its best logit beats the
  runner-up by CONFIDENT_MARGIN), the artifact must make the same choice in at least MIN_CONFIDENT_AGREEMENT of
  them. Fewer than MIN_CONFIDENT_POSITIONS confident choices give no verdict (random-weight test models are almost
  never confident), so this catches broken quantization of trained models without flagging test models.
"""
from __future__ import annotations

import numpy as np

# precision -> the largest |logit difference| from the original model that still passes. Precisions not listed
# (fp16 among them: its logits move by 1e-2 or more on trained models) are judged by the choice rule.
TOLERANCES = {"fp32": 1e-4}
CONFIDENT_MARGIN = 1.0
MIN_CONFIDENT_AGREEMENT = 0.5
MIN_CONFIDENT_POSITIONS = 4
# How many real inputs (generated dev questions, or dev articles, that calibration never sees) the choice rule is
# judged on.
JUDGE_WINDOWS = 8
# Accuracy on a dev set (pocketbert eval, and --eval on a device): below fp32 an artifact must keep this share of
# the fp32 source's headline metric (F1 for QA, accuracy for classification; MLPerf Mobile's rule for int8), and we
# aim for the goal.
MIN_F1_RETAINED = 0.93
F1_RETAINED_GOAL = 0.99
# What an output's argmax picks, when the caller does not say (pocketbert/tasks.py's Task.choice).
DEFAULT_CHOICE = "answer position"


def tolerance_for(precision: str) -> float | None:
    """The logit tolerance that decides `precision`, or None where the answer rule decides."""
    return TOLERANCES.get(precision)


def rule_for(precision: str, choice: str = DEFAULT_CHOICE) -> str:
    """The rule that judges `precision`, in words (stored with every verdict); `choice` names what an argmax picks."""
    tolerance = tolerance_for(precision)
    if tolerance is not None:
        where = " at real-token positions" if choice == DEFAULT_CHOICE else ""
        return f"max |logit diff| from the original model <= {tolerance:.0e}{where}"
    return (f"same {choice} as the original model in >= {MIN_CONFIDENT_AGREEMENT:.0%} of the inputs where it is "
            f"confident (margin >= {CONFIDENT_MARGIN}); no verdict below {MIN_CONFIDENT_POSITIONS} such choices")


def output_key(name: str) -> str:
    """The short key an output's figures are stored under: start_logits -> start, end_logits -> end, logits -> logits."""
    return name[:-len("_logits")] if name.endswith("_logits") and name != "logits" else name


def _rows(got, want, mask):
    """Both outputs as float64 [rows, scores] and the [rows, scores] boolean of positions that count."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        got = got.reshape(want.shape) if got.size == want.size else got
    if got.shape != want.shape:
        raise ValueError(f"outputs have shape {got.shape}, expected {want.shape}")
    got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
    real = np.ones(got.shape, dtype=bool) if mask is None else np.asarray(mask).reshape(got.shape) != 0
    return got, want, real


def compare_logits(outputs, expected, tolerance: float | None = None, mask=None, names=("start", "end")) -> dict:
    """Compare an artifact's outputs (a tuple: QA's (start, end) [batch, seq], a classifier's (logits,)
    [batch, labels]) with the expected ones, output by output; `names` are their keys (rules.output_key).

    `mask` ([batch, seq], 1 = real token) limits the comparison to real tokens, for outputs over positions:
    logits at padding positions are never read by span decoding, and models differ there by design (ModernBERT's
    fully masked rows, for one). None compares every value (a classifier's labels).

    Returns max_abs_diff (over every output and compared value; inf if either side has NaN/inf), the same per
    output as max_abs_diff_<name>, the share of rows whose argmax agrees per output, the row count, the tolerance
    and passed: max_abs_diff <= tolerance, or None when no tolerance applies (quantized artifacts).
    """
    outputs, expected = tuple(outputs), tuple(expected)
    if len(outputs) != len(expected):
        raise ValueError(f"{len(outputs)} outputs, expected {len(expected)}")
    names = tuple(names)[:len(expected)] if len(names) >= len(expected) else tuple(f"output{i}" for i in range(len(expected)))
    diffs = {}
    agreement = {}
    rows = None
    for name, got, want in zip(names, outputs, expected):
        got, want, real = _rows(got, want, mask)
        got, want = np.where(real, got, 0.0), np.where(real, want, 0.0)
        finite = np.isfinite(got).all() and np.isfinite(want).all()
        diffs[name] = float(np.abs(got - want).max()) if finite else float("inf")
        agreement[name] = float((np.where(real, got, -np.inf).argmax(-1)
                                 == np.where(real, want, -np.inf).argmax(-1)).mean())
        rows = len(got)
    max_abs_diff = max(diffs.values())
    return {
        "max_abs_diff": max_abs_diff,
        **{f"max_abs_diff_{name}": diff for name, diff in diffs.items()},
        "argmax_agreement": agreement,
        "rows": rows,
        "tolerance": tolerance,
        "passed": None if tolerance is None else bool(max_abs_diff <= tolerance),
    }


def confident_agreement(outputs, reference, mask=None) -> dict:
    """How often `outputs` make the reference's choice (argmax over positions or labels) where it is confident."""
    agreeing = confident = 0
    for got, expected in zip(outputs, reference):
        got, expected, real = _rows(got, expected, mask)
        expected = np.where(real, expected, -np.inf)
        got = np.where(real, got, -np.inf)
        top_two = np.sort(expected, axis=-1)[:, -2:]
        sure = top_two[:, 1] - top_two[:, 0] >= CONFIDENT_MARGIN
        confident += int(sure.sum())
        agreeing += int((got.argmax(-1) == expected.argmax(-1))[sure].sum())
    agreement = agreeing / confident if confident else None
    verdict = None if agreement is None or confident < MIN_CONFIDENT_POSITIONS else bool(agreement >= MIN_CONFIDENT_AGREEMENT)
    return {"confident_margin": CONFIDENT_MARGIN, "confident_positions": confident, "agreement": agreement,
            "min_agreement": MIN_CONFIDENT_AGREEMENT, "passed": verdict}


def judge(outputs, reference, precision: str, mask=None, output_names=("start_logits", "end_logits"),
          choice: str = DEFAULT_CHOICE) -> dict:
    """The verdict on an artifact's outputs against the original model's on the same inputs. `mask`: the
    attention mask where outputs run over positions, None where they run over labels; `output_names` and `choice`
    come from the task (pocketbert/tasks.py).

    compare_logits' figures, plus "rule" (in words), "choice", "confident_answers" where the choice rule decides,
    and "passed": True, False, or None (no verdict: too few confident choices)."""
    check = compare_logits(outputs, reference, tolerance_for(precision), mask=mask,
                           names=[output_key(name) for name in output_names])
    check["rule"] = rule_for(precision, choice)
    check["precision"] = precision
    check["choice"] = choice
    if check["tolerance"] is None:
        check["confident_answers"] = confident_agreement(outputs, reference, mask)
        check["passed"] = check["confident_answers"]["passed"]
    return check


def f1_verdict(precision: str, f1_retained: float | None, metric: str = "F1") -> str:
    """The accuracy verdict on an artifact's headline metric (`metric`: F1 for QA, accuracy for classification) as a
    share of its fp32 source's ("-" for fp32 or no reference)."""
    if precision == "fp32" or f1_retained is None:
        return "-"
    if f1_retained < MIN_F1_RETAINED:
        return f"FAILS (< {MIN_F1_RETAINED:.0%} of fp32 {metric})"
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
        return (f"no verdict: only {answers['confident_positions']} places where the original model is confident "
                f"(at least {MIN_CONFIDENT_POSITIONS} needed; random-weight models rarely are)")
    choice = check.get("choice", DEFAULT_CHOICE)
    return (f"picks the original model's {choice} in only {answers['agreement']:.0%} of the "
            f"{answers['confident_positions']} places where it is confident (at least "
            f"{answers['min_agreement']:.0%} needed)")
