"""The SQuAD v1.1 metric on cases worked by hand."""
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
