"""Training data is checked, not trusted: SQuAD v2 files are refused, and every training question's first
answer must sit where its `answer_start` says.

An `answer_start` that is missing, negative, not an integer, or points elsewhere is repaired when the
answer text occurs exactly once in the context; otherwise the question is left out of training. Both are
counted, printed and recorded in run.json.
"""
from __future__ import annotations

import collections
from dataclasses import replace

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import read_json
from pocketbert.qa import QAExample, load_squad

SKIP_REASONS = {
    "no_answer": "no answer",
    "no_text": "answer text empty or not a string",
    "text_not_in_context": "answer text not in the context",
    "ambiguous": "answer text several times in the context and answer_start unusable",
}


def load_v1_squad(path) -> list[QAExample]:
    """`load_squad`, refusing SQuAD v2.0 files: their unanswerable questions would train and score as if
    the empty string were the answer."""
    data = read_json(path, "SQuAD file")
    unanswerable = sum(1 for article in _list(data, "data") for paragraph in _list(article, "paragraphs")
                       for qa in _list(paragraph, "qas") if isinstance(qa, dict) and qa.get("is_impossible"))
    if unanswerable or str(data.get("version", "") if isinstance(data, dict) else "").startswith(("v2", "2")):
        raise PocketbertError(f"'{path}' is SQuAD v2.0 ({unanswerable} questions marked is_impossible); pocketbert "
                              "trains and scores SQuAD v1.1: drop the unanswerable questions or pass a v1.1 file")
    return load_squad(path)


def _list(container, key) -> list:
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, list) else []


def check_answers(examples: list[QAExample], path) -> tuple[list[QAExample], dict]:
    """(the examples to train on, a report: counts, a one-line summary, a few skipped ids)."""
    kept: list[QAExample] = []
    fixed = 0
    skipped: collections.Counter[str] = collections.Counter()  # questions left out, per reason
    skipped_ids = []
    for example in examples:
        answer, problem = _checked_first_answer(example)
        if problem:
            skipped[problem] += 1
            skipped_ids.append(example.id)
            continue
        assert answer is not None  # _checked_first_answer names a problem whenever it has no answer
        if answer is not example.answers[0]:
            fixed += 1
            example = replace(example, answers=[answer, *example.answers[1:]])
        kept.append(example)
    if not kept:
        raise PocketbertError(f"no training question in '{path}' has an answer found in its context "
                              f"({', '.join(f'{SKIP_REASONS[r]}: {n}' for r, n in skipped.items())}); fix the file")
    parts = []
    if fixed:
        parts.append(f"{fixed} answer_start values fixed (the answer text occurs once in the context)")
    if skipped:
        parts.append(f"{sum(skipped.values())} questions left out ("
                     + ", ".join(f"{SKIP_REASONS[r]}: {n}" for r, n in sorted(skipped.items())) + ")")
    return kept, {"questions": len(examples), "used": len(kept), "answer_start_fixed": fixed,
                  "skipped": dict(skipped), "skipped_ids": skipped_ids[:20], "summary": "; ".join(parts)}


def _checked_first_answer(example: QAExample) -> tuple[dict | None, str | None]:
    """(the first answer, its answer_start repaired if needed; None) or (None, why it is unusable)."""
    if not isinstance(example.answers, list) or not example.answers or not isinstance(example.answers[0], dict):
        return None, "no_answer"
    answer = example.answers[0]
    text, start = answer.get("text"), answer.get("answer_start")
    if not isinstance(text, str) or not text.strip():
        return None, "no_text"
    if isinstance(start, int) and not isinstance(start, bool) and start >= 0 \
            and example.context[start:start + len(text)] == text:
        return answer, None
    found = _occurrences(example.context, text)
    if not found:
        return None, "text_not_in_context"
    if len(found) > 1:
        return None, "ambiguous"
    return {**answer, "answer_start": found[0]}, None


def _occurrences(context: str, text: str) -> list[int]:
    found, begin = [], context.find(text)
    while begin != -1:
        found.append(begin)
        begin = context.find(text, begin + 1)
    return found
