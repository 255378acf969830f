"""The SQuAD v1.1 metric on cases worked by hand."""
import numpy as np
import pytest

from pocketbert.qa import QAExample, exact_match, f1, normalize_answer, squad_scores


def test_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # 'the' only as a whole word


def test_exact_match():
    assert exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0


def test_token_f1_by_hand():
    # pred [eiffel tower in paris], gold [eiffel tower]: P = 2/4, R = 1, F1 = 2*(1/2)/(3/2) = 2/3
    assert f1("Eiffel Tower in Paris", "the Eiffel Tower") == pytest.approx(2 / 3)
    # pred [eiffel tower paris]: P = 2/3, R = 1, F1 = 2*(2/3)/(5/3) = 0.8
    assert f1("Eiffel Tower, Paris", "Eiffel Tower") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred [x x y], gold [x y y] -> common {x: 1, y: 1}, P = R = 2/3
    assert f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1("nothing shared", "Eiffel Tower") == 0.0
    assert f1("", "Eiffel Tower") == 0.0


def test_squad_scores_take_the_best_gold_answer_and_average_in_percent():
    examples = [
        QAExample("1", "q", "c", [{"text": "Denver Broncos", "answer_start": 0}, {"text": "Broncos", "answer_start": 7}]),
        QAExample("2", "q", "c", [{"text": "Santa Clara, California", "answer_start": 0}]),
        QAExample("3", "q", "c", [{"text": "1911", "answer_start": 0}]),
    ]
    predictions = {"1": "the Broncos", "2": "Santa Clara", "3": "1903"}
    # 1: EM 1 (matches 'Broncos'). 2: pred {santa, clara}, gold {santa, clara, california}: P 1, R 2/3, F1 0.8.
    # 3: 0. EM = 1/3, F1 = (1 + 0.8 + 0) / 3.
    scores = squad_scores(examples, predictions)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * 1.8 / 3)
    assert scores["count"] == 3
    assert squad_scores(examples, {})["f1"] == 0.0  # missing predictions score zero


def test_normalisation_order_follows_the_official_v1_1_script():
    # lower -> drop ASCII punctuation -> drop articles -> collapse spaces, in that order (evaluate-v1.1.py).
    assert normalize_answer("The-Broncos") == "thebroncos"  # punctuation goes first, so 'the' is no longer a word
    assert normalize_answer("(an) apple") == "apple"
    assert normalize_answer("A.B.C.") == "abc"
    assert normalize_answer("\u201cBroncos\u201d") == "\u201cbroncos\u201d"  # only string.punctuation is removed
    # A prediction that normalises to nothing: EM compares the empty strings, F1 has no common token.
    assert exact_match("The", "the") == 1.0 and f1("The", "the") == 0.0


def test_nbest_is_best_first_distinct_and_its_head_is_the_decoded_answer():
    from pocketbert.qa import decode_answers, decode_nbest

    context = "Paris is big"
    example = QAExample("q", "Where?", context)
    # Window tokens: [CLS] q [SEP] Paris is big [SEP]; offsets only on the context tokens.
    offsets = [None, None, None, (0, 5), (6, 8), (9, 12), None]
    features = {"example_index": [0, 0], "offsets": [offsets, offsets]}
    start = np.array([[0, 0, 0, 5, 1, 0, 0], [0, 0, 0, 4, 1, 0, 0]], dtype=np.float32)
    end = np.array([[0, 0, 0, 5, 0, 2, 0], [0, 0, 0, 4, 0, 2, 0]], dtype=np.float32)
    nbest = decode_nbest([example], features, start, end)["q"]
    assert [c["text"] for c in nbest[:2]] == ["Paris", "Paris is big"]  # 10 beats 7; window 2's 'Paris' (8) merged
    assert len({c["text"] for c in nbest}) == len(nbest)
    assert sum(c["probability"] for c in nbest) == pytest.approx(1.0)
    assert (nbest[0]["start_logit"], nbest[0]["end_logit"]) == (5.0, 5.0)
    assert decode_answers([example], features, start, end) == {"q": "Paris"}
