"""`pocketbert eval` and `device run --eval` take classifiers: the task from the manifest or config, labelled text as
--data, accuracy / macro-F1 / per-label figures equal to pocketbert.classification's on the same predictions, a
predictions.jsonl and a confusion-matrix PNG per model, the accuracy kept against the fp32 source judged by the
rulebook; bad data is one line and writes nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_LABELS

from pocketbert.classification import classification_scores
from pocketbert.cli import main
from pocketbert.rules import f1_verdict

LENGTH = 64
TEXTS = [
    "Shares in the carmaker rose after it reported record profits for the third quarter.",
    "The central bank left interest rates unchanged, citing weaker growth in exports.",
    "The film won three awards at the festival, including best director.",
    "Her new album tops the charts a week after its release.",
    "The prime minister faced questions in parliament about the budget.",
    "Voters in the north will choose a new mayor next month.",
    "The striker scored twice as the home side won the cup final.",
    "The tennis champion withdrew from the tournament with a wrist injury.",
    "The company released a phone with a faster chip and a larger battery.",
    "Engineers say the new software update fixes the security flaw.",
    "A record number of fans watched the match on television.",
    "The opposition party promised lower taxes if it wins the election.",
]


@pytest.fixture(scope="module")
def artifacts(tiny_distilbert_classifier, tmp_path_factory, export_once):
    """The tiny classifier exported to ONNX fp32 and int8 at one length, and the checkpoint itself."""
    root = tmp_path_factory.mktemp("classify-eval")
    for precision in ("fp32", "int8"):
        export_once(tiny_distilbert_classifier, "onnx", root / f"onnx-{precision}", seq_lens=(LENGTH,),
                    precision=precision)
    return {"onnx-fp32": root / "onnx-fp32", "onnx-int8": root / "onnx-int8", "checkpoint": tiny_distilbert_classifier}


def _write_jsonl(path, texts, labels) -> str:
    path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in zip(texts, labels)))
    return str(path)


@pytest.fixture(scope="module")
def dev_file(artifacts, tmp_path_factory):
    """Gold labels: what the tiny PyTorch model picks for every other text, another label for the rest, so accuracy
    is strictly between 0 and 100 and any drift between runtimes shows."""
    from pocketbert.bench.runtimes import pytorch_runner
    from pocketbert.modeling import load_tokenizer
    from pocketbert.reference import text_rows

    runner = pytorch_runner(str(artifacts["checkpoint"]))
    rows = text_rows(load_tokenizer(artifacts["checkpoint"]), TEXTS, runner.input_names, LENGTH)
    picked = runner(rows)[0].argmax(-1)
    labels = [TINY_LABELS[p] if i % 2 == 0 else TINY_LABELS[(p + 1) % len(TINY_LABELS)] for i, p in enumerate(picked)]
    return _write_jsonl(tmp_path_factory.mktemp("classify-data") / "dev.jsonl", TEXTS, labels)


def _read_predictions(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_artifacts_and_checkpoint_score_what_classification_scores_says(artifacts, dev_file, tmp_path, capsys):
    out = tmp_path / "eval"
    models = [str(artifacts[name]) for name in ("onnx-fp32", "onnx-int8", "checkpoint")]
    assert main(["eval", *models, "--data", dev_file, "--max-seq-len", str(LENGTH), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "eval.json").read_text())
    fp32, int8, checkpoint = report["entries"]
    assert report["task"] == "text-classification"
    for entry in report["entries"]:
        assert entry["status"] == "ok" and entry["task"] == "text-classification" and entry["seq_len"] == LENGTH
        assert entry["count"] == len(TEXTS) and entry["labels"] == list(TINY_LABELS)
        folder = out / entry["predictions"]
        rows = _read_predictions(folder)
        assert [row["index"] for row in rows] == list(range(len(TEXTS))) and rows[0]["line"] == 1
        assert all(sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-4) for row in rows)
        gold = [TINY_LABELS.index(row["gold"]) for row in rows]
        predicted = [TINY_LABELS.index(row["predicted"]) for row in rows]
        assert all(row["predicted"] == max(row["scores"], key=row["scores"].get) for row in rows)
        expected = classification_scores(gold, predicted, list(TINY_LABELS))
        assert entry["accuracy"] == expected["accuracy"] and entry["macro_f1"] == expected["macro_f1"]
        assert entry["per_label"] == expected["per_label"]
        confusion = np.asarray(entry["confusion"])
        assert confusion.sum() == len(TEXTS) and np.trace(confusion) == sum(g == p for g, p in zip(gold, predicted))
        assert (folder / "confusion.png").stat().st_size > 0
        assert f"accuracy {entry['accuracy']:.2f} macro-F1 {entry['macro_f1']:.2f} on {len(TEXTS)} texts" in printed
    assert 0 < checkpoint["accuracy"] < 100 and checkpoint["format"] == "pytorch" and "reference" not in checkpoint
    # fp32 scores exactly what its PyTorch source scores; int8's share of it is judged by the rulebook on accuracy.
    assert fp32["accuracy"] == fp32["reference"]["accuracy"] == checkpoint["accuracy"]
    assert fp32["accuracy_retained"] == pytest.approx(1.0) and fp32["verdict"] == "-"
    assert int8["reference"]["accuracy"] == checkpoint["accuracy"]
    assert int8["accuracy_retained"] == pytest.approx(int8["accuracy"] / checkpoint["accuracy"])
    assert int8["verdict"] == f1_verdict("int8", int8["accuracy_retained"], metric="accuracy")
    assert "| accuracy | macro-F1 |" in (out / "eval.md").read_text()
    assert (out / "accuracy_size.png").stat().st_size > 0


def test_labels_file_names_the_logits_and_a_bench_report_gets_its_own_section(artifacts, dev_file, tmp_path):
    from pocketbert.bench.evaluate import evaluate
    from pocketbert.bench.report import write_report
    from pocketbert.bench.task_eval import EvalRequest
    from pocketbert.results import load_results, new_results, save_results

    # The same data under other names, with a labels.txt naming the logits in order as the data does.
    renamed = [f"topic-{i}" for i in range(len(TINY_LABELS))]
    rows = [json.loads(line) for line in open(dev_file)]
    data = _write_jsonl(tmp_path / "renamed.jsonl", [r["text"] for r in rows],
                        [renamed[TINY_LABELS.index(r["label"])] for r in rows])
    (tmp_path / "names.txt").write_text("\n".join(renamed) + "\n")
    save_results(tmp_path / "results.json", new_results({"seq_lens": [LENGTH]}, []))
    write_report(load_results(tmp_path), tmp_path)
    entry, = evaluate([str(artifacts["onnx-fp32"])], data, EvalRequest(labels=str(tmp_path / "names.txt")),
                      out=tmp_path)["entries"]
    original, = evaluate([str(artifacts["onnx-fp32"])], dev_file, seq_len=LENGTH)["entries"]
    assert entry["seq_len"] == 128 and original["seq_len"] == LENGTH  # the default; the texts are shorter than both
    assert entry["accuracy"] == original["accuracy"] and list(entry["per_label"]) == renamed
    assert "## Accuracy (text classification)" in (tmp_path / "report.md").read_text()
    assert load_results(tmp_path)["eval"][0]["accuracy"] == entry["accuracy"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case", ["unknown label", "missing column", "empty file", "squad data", "labels count",
                                  "qa option"])
def test_bad_data_is_one_line_and_writes_nothing(artifacts, tmp_path, capsys, case):
    data, extra = tmp_path / "dev.jsonl", []
    if case == "unknown label":
        _write_jsonl(data, TEXTS[:3], ["sport", "weather", "tech"])
        expected = ["line 2", "'weather'", "sport"]
    elif case == "missing column":
        data.write_text(json.dumps({"text": TEXTS[0], "label": "sport"}) + "\n" + json.dumps({"text": TEXTS[1]}) + "\n")
        expected = ["line 2", "no column 'label'", "--label-column"]
    elif case == "empty file":
        data.write_text("")
        expected = ["holds no examples"]
    elif case == "squad data":
        data = tmp_path / "dev.json"
        data.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
            {"context": TEXTS[0], "qas": [{"id": "q", "question": "What rose?", "answers": [
                {"text": "Shares", "answer_start": 0}]}]}]}]}))
        expected = ["question-answering", "classifies texts", ".jsonl"]
    elif case == "labels count":
        _write_jsonl(data, TEXTS[:2], ["sport", "tech"])
        (tmp_path / "labels.txt").write_text("sport\ntech\n")
        extra = ["--labels", str(tmp_path / "labels.txt")]
        expected = ["names 2 labels", "predicts 5"]
    else:
        _write_jsonl(data, TEXTS[:2], ["sport", "tech"])
        extra = ["--doc-stride", "32"]
        expected = ["--doc-stride", "drop --doc-stride"]
    out = tmp_path / "out"
    assert main(["eval", str(artifacts["onnx-fp32"]), "--data", str(data), "--out", str(out), *extra]) == 2
    err = _one_line_error(capsys)
    assert all(word in err for word in expected), err
    assert not out.exists()


def test_a_classifier_and_a_qa_model_are_not_scored_on_one_file(artifacts, dev_file, tiny_distilbert_qa, tmp_path,
                                                                capsys):
    assert main(["eval", str(artifacts["onnx-fp32"]), str(tiny_distilbert_qa), "--data", dev_file]) == 2
    err = _one_line_error(capsys)
    assert "text-classification model" in err and "question-answering model" in err
    # and labelled text given to a QA model names what it is
    assert main(["eval", str(tiny_distilbert_qa), "--data", dev_file]) == 2
    assert "labelled text" in _one_line_error(capsys)


def test_device_run_on_the_host_scores_a_classifier_as_eval_does(artifacts, dev_file, tmp_path, capsys):
    """`device run --target host --eval`: the host scores the device's logits by the same evaluation as `pocketbert
    eval`, on the same first N texts, beside the artifact on the host and its PyTorch source."""
    count = 7
    out = tmp_path / "device"
    assert main(["device", "run", "--target", "host", str(artifacts["onnx-int8"]), "--eval", dev_file,
                 "--max-questions", str(count), "--warmup", "0", "--runs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    entry, = json.loads((out / "results.json").read_text())["eval"]
    assert entry["status"] == "ok" and entry["task"] == "text-classification" and entry["count"] == count

    rows = [json.loads(line) for line in open(dev_file)][:count]
    head = _write_jsonl(tmp_path / "head.jsonl", [r["text"] for r in rows], [r["label"] for r in rows])
    from pocketbert.bench.evaluate import evaluate

    on_host, = evaluate([str(artifacts["onnx-int8"])], head, seq_len=LENGTH)["entries"]
    assert entry["accuracy"] == on_host["accuracy"] == entry["host"]["accuracy"]
    assert entry["macro_f1"] == on_host["macro_f1"]
    assert entry["reference"]["accuracy"] == on_host["reference"]["accuracy"]
    assert entry["accuracy_retained"] == pytest.approx(on_host["accuracy_retained"])
    assert entry["verdict"] == on_host["verdict"]
    assert f"accuracy {entry['accuracy']:.2f} macro-F1 {entry['macro_f1']:.2f} on {count} texts" in printed
    assert "% kept" in printed


def test_a_classifier_runs_at_128_or_the_artifact_s_own_length(artifacts):
    from pocketbert.bench.runtimes import open_target
    from pocketbert.bench.task_eval import EvalRequest, TextClassificationEval
    from pocketbert.errors import PocketbertError

    evaluation, target = TextClassificationEval(), open_target(artifacts["onnx-fp32"], sizes=False)
    assert evaluation.fit(target, EvalRequest()) == 128
    assert evaluation.fit(target, EvalRequest(max_seq_len=40)) == 40
    target.lengths = (64, 384)  # fixed lengths: the longest up to the one asked for
    assert evaluation.fit(target, EvalRequest()) == 64 and evaluation.fit(target, EvalRequest(max_seq_len=512)) == 384
    target.lengths = (256,)  # only longer than the default: the artifact's own
    assert evaluation.fit(target, EvalRequest()) == 256
    with pytest.raises(PocketbertError, match="--max-seq-len"):
        evaluation.fit(target, EvalRequest(max_seq_len=100))
