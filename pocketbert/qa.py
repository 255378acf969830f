"""The extractive-QA task, shared by every stage: SQuAD v1.1 files, features, span decoding, EM/F1.

Training, export validation, benchmarking and evaluation all tokenise and decode through here, so a
score from an exported artifact and one from PyTorch differ only by the model.
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import astuple, dataclass, field

import numpy as np

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import read_json

MAX_SEQ_LEN = 384
DOC_STRIDE = 128
MAX_QUERY_LEN = 64
N_BEST = 20
MAX_ANSWER_LEN = 30


@dataclass(frozen=True)
class QAWindow:
    """How a question/context pair is cut into model windows: [CLS] question [SEP] context [SEP].

    A long context slides over several windows of `max_seq_len` tokens that share `doc_stride` tokens; the
    question keeps at most `max_query_len` tokens. Training, eval, bench and export validation all cut
    through `clamped`, so a window that one stage accepts is the same window in every other.
    """

    max_seq_len: int = MAX_SEQ_LEN
    doc_stride: int = DOC_STRIDE
    max_query_len: int = MAX_QUERY_LEN

    def clamped(self, max_positions: int | None = None) -> QAWindow:
        """This window made valid: no longer than the model's position table (`max_positions`), the question
        at most half of it, and the overlap below the context room left beside the longest question, or
        the tokenizer cannot slide."""
        length = min(self.max_seq_len, max_positions) if max_positions else self.max_seq_len
        if length < 8:
            raise PocketbertError(f"a QA window of {length} tokens cannot hold a question and context; use 8 or more")
        if self.max_query_len < 1 or self.doc_stride < 1:
            # 0 question tokens would strip every question (and score as if it were asked); a negative overlap
            # cannot be cut.
            raise PocketbertError(f"--max-query-len {self.max_query_len} and --doc-stride {self.doc_stride}: both must "
                                  "be at least 1")
        query = min(self.max_query_len, (length - 3) // 2)
        stride = min(self.doc_stride, length - 3 - query - 1)
        return QAWindow(length, stride, query)


@dataclass
class QAExample:
    """One SQuAD v1.1 question: its id, the question, its context paragraph and the reference answers."""

    id: str
    question: str
    context: str
    answers: list[dict] = field(default_factory=list)  # [{"text": str, "answer_start": int}]


def load_squad(path) -> list[QAExample]:
    """Read a SQuAD v1.1 JSON file into flat examples."""
    data = read_json(path, "SQuAD file")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise PocketbertError(f"'{path}' is not SQuAD v1.1 JSON (no top-level 'data' list); convert it first")
    examples = []
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    examples.append(QAExample(str(qa["id"]), qa["question"], paragraph["context"], qa.get("answers", [])))
    except (KeyError, TypeError) as err:
        raise PocketbertError(f"'{path}' is not SQuAD v1.1 JSON (missing field {err}); convert it first") from None
    if not examples:
        raise PocketbertError(f"'{path}' holds no questions; pass a non-empty SQuAD file")
    return examples


def require_gold_answers(examples: list[QAExample], path) -> list[QAExample]:
    """`examples`, if every one can be scored: a question without gold answers (SQuAD v2's unanswerable ones, or a
    damaged file) would score EM 100 and F1 0 against an empty answer."""
    missing = [ex.id for ex in examples if not any(str(a.get("text", "")).strip() for a in ex.answers
                                                  if isinstance(a, dict))]
    if missing:
        raise PocketbertError(f"{len(missing)} question(s) in '{path}' have no gold answer text (first: id "
                              f"{missing[0]!r}); EM/F1 needs SQuAD v1.1 dev data with answers for every question")
    return examples


def prepare_features(tokenizer, examples, window: QAWindow = QAWindow(), with_labels=False, pad_to_max=True) -> dict:
    """Tokenise question/context pairs into overlapping windows (the reference SQuAD recipe), cut by `window`.

    Returns numpy arrays input_ids / attention_mask / token_type_ids [n_features, L], plus
    `example_index` and `offsets` (character spans of context tokens, None elsewhere) for decoding,
    and start/end positions when `with_labels` (0, the [CLS] token, when the answer is outside the window).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise PocketbertError("a fast tokenizer is needed for answer offsets; save tokenizer.json with the model")
    max_seq_len, doc_stride, max_query_len = astuple(window.clamped())
    questions = []
    for ex in examples:
        ids = tokenizer(ex.question.strip(), add_special_tokens=False)["input_ids"][:max_query_len]
        questions.append(tokenizer.decode(ids))
    enc = tokenizer(
        questions, [ex.context for ex in examples],
        truncation="only_second", max_length=max_seq_len, stride=doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True,
        padding="max_length" if pad_to_max else "longest", return_token_type_ids=True,
    )
    example_index = list(enc["overflow_to_sample_mapping"])
    offsets, starts, ends = [], [], []
    for i, mapping in enumerate(enc["offset_mapping"]):
        sequence_ids = enc.sequence_ids(i)
        offsets.append([tuple(span) if sequence_ids[k] == 1 else None for k, span in enumerate(mapping)])
        if with_labels:
            start, end = _answer_token_span(examples[example_index[i]], offsets[-1])
            starts.append(start)
            ends.append(end)
    features = {
        "input_ids": np.asarray(enc["input_ids"], dtype=np.int64),
        "attention_mask": np.asarray(enc["attention_mask"], dtype=np.int64),
        "token_type_ids": np.asarray(enc["token_type_ids"], dtype=np.int64),
        "example_index": np.asarray(example_index, dtype=np.int64),
        "offsets": offsets,
    }
    if with_labels:
        features["start_positions"] = np.asarray(starts, dtype=np.int64)
        features["end_positions"] = np.asarray(ends, dtype=np.int64)
    return features


def _answer_token_span(example: QAExample, offsets) -> tuple[int, int]:
    if not example.answers:
        return 0, 0
    answer = example.answers[0]
    start_char = answer["answer_start"]
    end_char = start_char + len(answer["text"])
    context_tokens = [k for k, span in enumerate(offsets) if span is not None]
    if not context_tokens or offsets[context_tokens[0]][0] > start_char or offsets[context_tokens[-1]][1] < end_char:
        return 0, 0
    start = next(k for k in context_tokens if offsets[k][1] > start_char)
    end = next(k for k in reversed(context_tokens) if offsets[k][0] < end_char)
    return start, end


def decode_nbest(examples, features, start_logits, end_logits, n_best=N_BEST,
                 max_answer_len=MAX_ANSWER_LEN) -> dict[str, list[dict]]:
    """Each example's best context spans over all its windows, best first: {example id: [candidate, ...]}.

    A candidate is {"text", "probability", "start_logit", "end_logit"}; at most `n_best` distinct texts, each
    at its best score (start + end logit), probabilities a softmax over the kept scores. An example with no
    valid span gets an empty list.
    """
    by_example = collections.defaultdict(list)
    for feature_index, example_index in enumerate(features["example_index"]):
        by_example[int(example_index)].append(feature_index)
    nbest = {}
    for example_index, example in enumerate(examples):
        spans = []  # (score, text, start logit, end logit), in window/start/end order so ties keep the first
        for f in by_example.get(example_index, ()):
            offsets = features["offsets"][f]
            starts = np.argsort(start_logits[f])[::-1][:n_best]
            ends = np.argsort(end_logits[f])[::-1][:n_best]
            for s in starts:
                for e in ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_len:
                        continue
                    spans.append((start_logits[f][s] + end_logits[f][e], example.context[offsets[s][0]:offsets[e][1]],
                                  start_logits[f][s], end_logits[f][e]))
        kept: dict[str, tuple] = {}  # answer text -> its best (score, text, start logit, end logit)
        for span in sorted(spans, key=lambda span: -span[0]):  # stable: the first of equal scores stays first
            if span[1] not in kept and len(kept) < n_best:
                kept[span[1]] = span
        scores = np.array([span[0] for span in kept.values()], dtype=np.float64)
        probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum() if len(scores) else []
        nbest[example.id] = [{"text": text, "probability": float(p), "start_logit": float(start), "end_logit": float(end)}
                             for (_, text, start, end), p in zip(kept.values(), probabilities)]
    return nbest


def best_answers(nbest: dict[str, list[dict]]) -> dict[str, str]:
    """{example id: answer text}, the best candidate of each (empty where none): the official predictions file."""
    return {example_id: candidates[0]["text"] if candidates else "" for example_id, candidates in nbest.items()}


def decode_answers(examples, features, start_logits, end_logits, n_best=N_BEST, max_answer_len=MAX_ANSWER_LEN) -> dict:
    """Best context span per example over all its windows: {example id: answer text}."""
    return best_answers(decode_nbest(examples, features, start_logits, end_logits, n_best, max_answer_len))


# --- SQuAD v1.1 metric (the official script's normalisation; `evaluate.load("squad")` needs the hub) ---

def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and the articles a/an/the, collapse white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 if the answers are equal after SQuAD's normalisation (case, punctuation, articles, spaces), else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    """SQuAD's token-overlap F1 between the normalised answers: partial credit for a span that is nearly right."""
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    common = collections.Counter(pred_tokens) & collections.Counter(truth_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def question_scores(examples, predictions: dict) -> dict[str, dict]:
    """Per question, as the official script scores it: {id: {"prediction", "answers", "exact_match", "f1"}}, EM and
    F1 each the max over the gold answers, as fractions (0..1). A question without a prediction scores 0."""
    scored = {}
    for ex in examples:
        golds = [a["text"] for a in ex.answers] or [""]
        pred = predictions.get(ex.id, "")
        scored[ex.id] = {"prediction": pred, "answers": golds, "exact_match": max(exact_match(pred, g) for g in golds),
                         "f1": max(f1(pred, g) for g in golds)}
    return scored


def squad_scores(examples, predictions: dict) -> dict:
    """EM and F1 in percent, each the max over an example's gold answers, averaged over examples."""
    scored = question_scores(examples, predictions)
    n = max(len(examples), 1)
    return {"exact_match": 100.0 * sum(scored[ex.id]["exact_match"] for ex in examples) / n,
            "f1": 100.0 * sum(scored[ex.id]["f1"] for ex in examples) / n, "count": len(examples)}
