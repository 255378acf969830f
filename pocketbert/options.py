"""Range checks for numeric command-line options, run before any work: one line naming each option out of range.

Each command builds a list of checks, e.g.

    check_options(at_least("--batch-size", args.batch_size, 1), above("--lr", args.lr, 0),
                  between("--warmup", args.warmup, 0, 1, high_open=True))

and `check_options` raises one PocketbertError listing every option out of range with the range it must be in.
An option left unset (None) passes: its default applies. NaN and infinities never pass.
"""
from __future__ import annotations

import math

from pocketbert.errors import PocketbertError


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(name: str, value) -> str | None:
    if _number(value) and not math.isfinite(value):
        return f"{name} {value} (must be a finite number)"
    return None


def at_least(name: str, value, low) -> str | None:
    """`value` >= `low` (None passes); the problem as '--name VALUE (must be at least LOW)', else None."""
    if value is None:
        return None
    return _finite(name, value) or (f"{name} {value} (must be at least {low})" if value < low else None)


def above(name: str, value, low) -> str | None:
    """`value` > `low` (None passes)."""
    if value is None:
        return None
    return _finite(name, value) or (f"{name} {value} (must be above {low})" if value <= low else None)


def between(name: str, value, low, high, high_open: bool = False) -> str | None:
    """low <= `value` <= high (< high with `high_open`; None passes)."""
    if value is None:
        return None
    problem = _finite(name, value)
    if problem:
        return problem
    if value < low or value > high or (high_open and value == high):
        return f"{name} {value} (must be from {low} to {'below ' if high_open else ''}{high})"
    return None


def each_at_least(name: str, values, low) -> str | None:
    """Every value of a list option (nargs='+') >= `low`."""
    wrong = [v for v in (values or ()) if at_least(name, v, low)]
    return f"{name} {' '.join(map(str, wrong))} (each must be at least {low})" if wrong else None


def check_options(*problems: str | None) -> None:
    """Raise one PocketbertError naming every option out of range; nothing when all are None."""
    found = [problem for problem in problems if problem]
    if found:
        raise PocketbertError(f"out of range: {'; '.join(found)}; pass values in range")


def qa_window_problems(max_seq_len: int, doc_stride: int | None, max_query_len: int | None,
                       seq_option: str = "--max-seq-len") -> list:
    """The problems of a QA window asked for on the command line (`seq_option` names the length option):
    a window of at least 8 tokens, a question of at least one token that leaves room for context, and an overlap
    shorter than the window (the window slides by max_seq_len - doc_stride tokens; windows that overlap by their
    whole length never advance, and a negative overlap cannot be cut). None: the option was not given, its default
    applies and QAWindow.clamped fits it to the window (a default overlap of 128 in a 64-token window is no error)."""
    problems = [at_least(seq_option, max_seq_len, 8), at_least("--doc-stride", doc_stride, 1),
                at_least("--max-query-len", max_query_len, 1)]
    if not any(problems):
        if doc_stride is not None and doc_stride >= max_seq_len:
            problems.append(f"--doc-stride {doc_stride} (the overlap between windows must be below {seq_option} "
                            f"{max_seq_len}, e.g. {max(1, max_seq_len // 3)})")
        if max_query_len is not None and max_query_len >= max_seq_len - 3:
            problems.append(f"--max-query-len {max_query_len} (must leave room for context in a {max_seq_len}-token "
                            f"window: below {max_seq_len - 3})")
    return problems
