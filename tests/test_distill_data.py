"""Training data is checked, not trusted: misplaced answers repaired or left out (and counted), SQuAD v2
refused, a damaged checkpoint one line with nothing left behind."""
from __future__ import annotations

import json

import pytest

from pocketbert.cli import main
from pocketbert.distill.squad_checks import check_answers, load_v1_squad
from pocketbert.errors import PocketbertError
from pocketbert.qa import QAExample

CONTEXT = "Ada Lovelace wrote the first program in 1843. Babbage built the engine; Babbage was proud."


def _example(id, text, **start):
    return QAExample(id, "?", CONTEXT, [{"text": text, **start}])


def test_answers_are_repaired_when_unambiguous_and_left_out_otherwise():
    right = CONTEXT.index("1843")
    examples = [
        _example("ok", "1843", answer_start=right),
        _example("off-by-some", "1843", answer_start=right - 3),
        _example("negative", "Ada Lovelace", answer_start=-1),
        _example("missing", "the engine"),
        _example("string", "first program", answer_start=str(CONTEXT.index("first"))),
        _example("absent", "Charles Dickens", answer_start=0),
        _example("ambiguous", "Babbage", answer_start=3),
        QAExample("empty", "?", CONTEXT, []),
    ]
    kept, report = check_answers(examples, "train.json")
    assert [e.id for e in kept] == ["ok", "off-by-some", "negative", "missing", "string"]
    for example in kept:
        answer = example.answers[0]
        assert CONTEXT[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] == answer["text"]
    assert report["answer_start_fixed"] == 4 and report["used"] == 5 and report["questions"] == 8
    assert report["skipped"] == {"text_not_in_context": 1, "ambiguous": 1, "no_answer": 1}
    assert "4 answer_start values fixed" in report["summary"] and "3 questions left out" in report["summary"]
    assert examples[1].answers[0]["answer_start"] == right - 3  # the caller's examples are not changed


def test_nothing_usable_is_one_line():
    with pytest.raises(PocketbertError, match="no training question"):
        check_answers([_example("absent", "Charles Dickens", answer_start=0)], "train.json")


def _squad(path, qas, version="1.1"):
    path.write_text(json.dumps({"version": version, "data": [{"title": "t", "paragraphs": [
        {"context": CONTEXT, "qas": qas}]}]}))
    return path


def test_squad_v2_is_refused_in_one_line(tmp_path, tiny_distilbert_qa, capsys):
    v2 = _squad(tmp_path / "v2.json", [
        {"id": "a", "question": "When?", "answers": [{"text": "1843", "answer_start": CONTEXT.index("1843")}],
         "is_impossible": False},
        {"id": "b", "question": "Who painted it?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Babbage", "answer_start": 46}]}], version="v2.0")
    with pytest.raises(PocketbertError, match="SQuAD v2.0 .1 questions marked is_impossible"):
        load_v1_squad(v2)
    out = tmp_path / "run"
    assert main(["finetune", "qa", str(tiny_distilbert_qa), "--train", str(v2), "--dev", str(v2), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "v1.1" in err[0] and not out.exists()


def test_misplaced_answers_are_recorded_in_run_json(tmp_path, tiny_distilbert_qa, capsys):
    right = CONTEXT.index("1843")
    train = _squad(tmp_path / "train.json", [
        {"id": "a", "question": "When?", "answers": [{"text": "1843", "answer_start": right + 5}]},
        {"id": "b", "question": "Who?", "answers": [{"text": "Ada Lovelace", "answer_start": "zero"}]},
        {"id": "c", "question": "Who was proud?", "answers": [{"text": "Babbage", "answer_start": 1}]}])
    out = tmp_path / "run"
    assert main(["finetune", "qa", str(tiny_distilbert_qa), "--train", str(train), "--dev", str(train), "--out", str(out),
                 "--max-seq-len", "48", "--max-steps", "1", "--batch-size", "2"]) == 0
    assert "2 answer_start values fixed" in capsys.readouterr().out
    check = json.loads((out / "run.json").read_text())["training_data_check"]
    assert check["answer_start_fixed"] == 2 and check["skipped"] == {"ambiguous": 1} and check["skipped_ids"] == ["c"]


def test_damaged_checkpoint_is_one_line_and_leaves_nothing(tmp_path, tiny_distilbert_qa, capsys):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for file in tiny_distilbert_qa.iterdir():
        (damaged / file.name).write_bytes(file.read_bytes())
    (damaged / "model.safetensors").write_bytes(b"\x00" * 64)
    train = _squad(tmp_path / "train.json", [
        {"id": "a", "question": "When?", "answers": [{"text": "1843", "answer_start": CONTEXT.index("1843")}]}])
    out = tmp_path / "run"
    args = ["finetune", "qa", str(damaged), "--train", str(train), "--dev", str(train), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0] and not out.exists()
