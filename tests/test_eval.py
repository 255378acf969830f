"""eval: an fp32 artifact scores exactly what its PyTorch source scores, through the shared QA code."""
from __future__ import annotations

import json

import pytest

from pocketbert.errors import PocketbertError
from pocketbert.qa import QAExample, QAWindow, best_answers

SEQ = 64
CONTEXTS = [
    "The lighthouse on the northern cape was built in 1872 by the engineer Thomas Stevenson, and its lamp "
    "could be seen from twenty miles out at sea.",
    "Mount Kenya is the second highest mountain in Africa; its summit, Batian, rises to 5,199 metres above sea level.",
]
QUESTIONS = [("q1", 0, "Who built the lighthouse?"), ("q2", 0, "When was the lighthouse built?"),
             ("q3", 1, "How high is Batian?"), ("q4", 1, "Which continent is Mount Kenya in?")]


def _squad_file(path, answers: dict) -> str:
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": question,
                                      "answers": [{"text": answers[qid], "answer_start": context.find(answers[qid])}]}
                                     for qid, index, question in QUESTIONS if index == c]}
        for c, context in enumerate(CONTEXTS)]}]}
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_distilbert_qa, tmp_path_factory, export_once):
    folder = tmp_path_factory.mktemp("eval") / "onnx"
    export_once(str(tiny_distilbert_qa), "onnx", folder, seq_lens=(SEQ,))
    return folder


@pytest.fixture(scope="module")
def squad_file(tiny_distilbert_qa, tmp_path_factory):
    """Gold answers: what the tiny PyTorch model predicts for two questions, real spans for the others,
    so both EM and F1 are between 0 and 100 and any drift between runtimes would show."""
    from pocketbert.bench.evaluate import predict_nbest
    from pocketbert.bench.runtimes import pytorch_runner
    from pocketbert.modeling import load_tokenizer

    examples = [QAExample(qid, q, CONTEXTS[i]) for qid, i, q in QUESTIONS]
    predicted = best_answers(predict_nbest(pytorch_runner(str(tiny_distilbert_qa)), load_tokenizer(tiny_distilbert_qa),
                                           examples, QAWindow(SEQ, 16)))
    answers = {"q1": predicted["q1"] or "Thomas Stevenson", "q2": "1872", "q3": predicted["q3"] or "5,199 metres",
               "q4": "Africa"}
    return _squad_file(tmp_path_factory.mktemp("squad") / "dev.json", answers)


def test_fp32_artifact_scores_like_its_pytorch_source(tiny_onnx, squad_file, tmp_path):
    from pocketbert.bench.evaluate import evaluate

    report = evaluate([str(tiny_onnx)], squad_file, QAWindow(SEQ, 16), out=tmp_path)
    entry = report["entries"][0]
    assert entry["status"] == "ok" and entry["count"] == 4 and entry["seq_len"] == SEQ
    assert 0 < entry["f1"] <= 100
    assert entry["exact_match"] == entry["reference"]["exact_match"]
    assert entry["f1"] == entry["reference"]["f1"]
    assert entry["f1_retained"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "eval.json").read_text())["entries"][0]["f1"] == entry["f1"]
    assert "| EM |" in (tmp_path / "eval.md").read_text()
    assert entry["file_bytes"] > 0 and (tmp_path / "accuracy_size.png").stat().st_size > 0


def test_eval_joins_a_bench_report(tiny_onnx, squad_file, tmp_path):
    from pocketbert.bench.evaluate import evaluate
    from pocketbert.bench.report import write_report
    from pocketbert.results import load_results, new_results, save_results

    save_results(tmp_path / "results.json", new_results({"seq_lens": [SEQ]}, []))
    write_report(load_results(tmp_path), tmp_path)
    evaluate([str(tiny_onnx)], squad_file, QAWindow(SEQ, 16), out=tmp_path)
    assert len(load_results(tmp_path)["eval"]) == 1
    assert "## Accuracy (SQuAD v1.1)" in (tmp_path / "report.md").read_text()


def test_int8_rule_flags_artifacts_below_93_percent():
    from pocketbert.bench.evaluate import judge

    base = {"precision": "int8", "reference": {"f1": 80.0}}
    assert judge({**base, "f1": 70.0})["verdict"].startswith("FAILS")
    assert judge({**base, "f1": 76.0})["verdict"].startswith("passes, below")
    assert judge({**base, "f1": 79.5})["verdict"] == "passes"


def test_fixed_length_artifact_refuses_a_length_it_cannot_run(tiny_onnx, squad_file):
    from pocketbert.bench.evaluate import fit_window
    from pocketbert.bench.runtimes import open_target

    target = open_target(tiny_onnx, sizes=False)
    target.lengths = (SEQ,)
    assert fit_window(target, QAWindow(384)).max_seq_len == SEQ
    target.lengths = (128,)
    with pytest.raises(PocketbertError, match="--max-seq-len"):
        fit_window(target, QAWindow(SEQ))


def test_qa_window_is_clamped_once_to_what_the_model_and_tokenizer_allow():
    assert QAWindow().clamped() == QAWindow(384, 128, 64)
    # A 32-token window: the question keeps at most (32 - 3) // 2 tokens, the overlap stays below what is left.
    assert QAWindow(32, 128, 64).clamped() == QAWindow(32, 14, 14)
    assert QAWindow(512).clamped(max_positions=128).max_seq_len == 128
    with pytest.raises(PocketbertError, match="8 or more"):
        QAWindow(4).clamped()


def test_eval_out_writes_squad_predictions_that_rescore_to_the_same_scores(tiny_onnx, squad_file, tmp_path, capsys):
    from pocketbert.bench.evaluate import evaluate, rescore
    from pocketbert.cli import main

    entry = evaluate([str(tiny_onnx)], squad_file, QAWindow(SEQ, 16), out=tmp_path)["entries"][0]
    folder = tmp_path / entry["predictions"]
    predictions = json.loads((folder / "predictions.json").read_text())
    assert set(predictions) == {qid for qid, _, _ in QUESTIONS} and all(isinstance(a, str) for a in predictions.values())
    nbest = json.loads((folder / "nbest_predictions.json").read_text())
    for qid, candidates in nbest.items():
        assert candidates[0]["text"] == predictions[qid]
        assert sum(c["probability"] for c in candidates) == pytest.approx(1.0)
        assert len({c["text"] for c in candidates}) == len(candidates) <= 20
    per_question = json.loads((folder / "question_scores.json").read_text())
    assert 100 * sum(q["f1"] for q in per_question.values()) / len(per_question) == pytest.approx(entry["f1"])

    rescored = rescore(folder / "predictions.json", squad_file, out=tmp_path / "rescored")
    assert (rescored["exact_match"], rescored["f1"]) == (entry["exact_match"], entry["f1"])
    assert (rescored["unanswered"], rescored["unknown_ids"]) == (0, 0)
    assert json.loads((tmp_path / "rescored" / "question_scores.json").read_text()) == per_question
    assert main(["eval", "--predictions", str(folder / "predictions.json"), "--data", squad_file]) == 0
    assert f"F1 {entry['f1']:.2f} on 4 questions" in capsys.readouterr().out


def test_rescoring_refuses_what_is_not_a_predictions_file(squad_file, tmp_path, capsys):
    from pocketbert.cli import main

    nbest_like = tmp_path / "nbest.json"
    nbest_like.write_text(json.dumps({"q1": [{"text": "x"}]}))
    assert main(["eval", "--predictions", str(nbest_like), "--data", squad_file]) == 2
    err = capsys.readouterr().err
    assert "not a SQuAD predictions file" in err and err.count("\n") == 1
    assert main(["eval", "model", "--predictions", str(nbest_like), "--data", squad_file]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_damaged_model_file_is_one_line(tiny_onnx, squad_file, tmp_path, capsys):
    import shutil

    from pocketbert.cli import main
    from pocketbert.manifest import read_manifest

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_onnx, damaged)
    model = damaged / read_manifest(damaged)["artifact"]
    model.write_bytes(model.read_bytes()[:1000])
    assert main(["eval", str(damaged), "--data", squad_file]) == 2
    err = capsys.readouterr().err
    assert "sha256 differs from the manifest's" in err and "re-export" in err and err.count("\n") == 1


def test_questions_without_gold_answers_are_refused(tiny_onnx, tmp_path, capsys):
    from pocketbert.cli import main

    unanswered = tmp_path / "unanswered.json"
    unanswered.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": CONTEXTS[0], "qas": [{"id": "q1", "question": "Who built it?", "answers": []}]}]}]}))
    for argv in (["eval", str(tiny_onnx), "--data", str(unanswered)],
                 ["eval", "--predictions", str(unanswered), "--data", str(unanswered)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no gold answer" in err and err.count("\n") == 1
