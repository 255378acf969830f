"""QA training: span labels, resume after an interruption, a tiny end-to-end distillation whose loss falls."""
import json

import pytest
import torch
from safetensors.torch import load_file

from pocketbert.cli import main
from pocketbert.distill.qa_train import FINE_TUNING, QAData, QALoss, train_qa
from pocketbert.distill.trainer import RUN_FILE, TrainConfig
from pocketbert.errors import PocketbertError
from pocketbert.modeling import embedded_teacher_dir, load_tokenizer
from pocketbert.qa import QAExample, QAWindow, load_squad, prepare_features

TOWNS = ["Quentin", "Morvale", "Ashby", "Larkfield", "Dunmore", "Penwick", "Corran", "Elmsford"]
LANDS = ["Zorbia", "Paltania", "Vestria", "Omberland", "Kelmora", "Duvania", "Sarnia", "Brevonia"]


def write_tiny_squad(path, n=16):
    paragraphs = []
    for i in range(n):
        town, land, year = TOWNS[i % 8], LANDS[(i * 3) % 8], 1800 + 7 * i
        context = f"The capital of {land} is {town}. It was founded in {year} by river traders."
        paragraphs.append({"context": context, "qas": [
            {"id": f"q{i}a", "question": f"What is the capital of {land}?",
             "answers": [{"text": town, "answer_start": context.index(town)}]},
            {"id": f"q{i}b", "question": f"When was the capital of {land} founded?",
             "answers": [{"text": str(year), "answer_start": context.index(str(year))}]},
        ]})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "towns", "paragraphs": paragraphs}]}))
    return path


@pytest.fixture(scope="module")
def squad(tmp_path_factory):
    return write_tiny_squad(tmp_path_factory.mktemp("squad") / "train.json")


def test_span_labels_decode_to_the_answer():
    tokenizer = load_tokenizer(embedded_teacher_dir())
    context = "Marie Curie won the Nobel Prize in Physics in 1903, and in Chemistry in 1911."
    examples = [QAExample("a", "When did Curie win the chemistry prize?", context,
                          [{"text": "1911", "answer_start": context.index("1911")}]),
                QAExample("b", "Who won the Nobel Prize?", context, [{"text": "Marie Curie", "answer_start": 0}]),
                QAExample("c", "Which prize?", context, [{"text": "Nobel Prize in Physics", "answer_start": 20}])]
    features = prepare_features(tokenizer, examples, QAWindow(64, 16), with_labels=True)
    for f, example in enumerate(examples):
        start, end = features["start_positions"][f], features["end_positions"][f]
        ids = features["input_ids"][f][start:end + 1]
        assert tokenizer.decode(ids) == example.answers[0]["text"].lower()
        assert features["token_type_ids"][f][start] == 1


def test_short_windows_fit_a_long_question_and_still_slide():
    tokenizer = load_tokenizer(embedded_teacher_dir())
    question = "What did the committee, after many long months of argument about budgets and staff, finally decide?"
    context = " ".join(["filler"] * 80) + " They decided to build the bridge."
    example = QAExample("a", question, context, [{"text": "build the bridge", "answer_start": context.index("build")}])
    features = prepare_features(tokenizer, [example], QAWindow(32, 128), with_labels=True)
    assert features["input_ids"].shape[1] == 32 and len(features["input_ids"]) > 3
    answered = [f for f in range(len(features["input_ids"])) if features["start_positions"][f] > 0]
    f = answered[0]
    ids = features["input_ids"][f][features["start_positions"][f]:features["end_positions"][f] + 1]
    assert tokenizer.decode(ids) == "build the bridge"


def test_span_outside_a_window_points_at_cls():
    tokenizer = load_tokenizer(embedded_teacher_dir())
    context = " ".join(["filler"] * 60) + " the answer is Paris."
    example = QAExample("a", "What is the answer?", context, [{"text": "Paris", "answer_start": context.index("Paris")}])
    features = prepare_features(tokenizer, [example], QAWindow(32, 8), with_labels=True)
    assert len(features["input_ids"]) > 2
    labelled = features["start_positions"] > 0
    assert labelled.any() and not labelled.all()
    assert (features["end_positions"][~labelled] == 0).all()


QA_SMALL = QAWindow(max_seq_len=48, doc_stride=16, max_query_len=16)


def _config(**overrides):
    values = dict(max_steps=6, save_steps=2, batch_size=4, lr=1e-3, logging_steps=1, seed=7)
    values.update(overrides)
    return TrainConfig(**values)


def test_resume_after_interruption_reaches_the_same_end(tiny_distilbert_qa, squad, tmp_path, kill_at_step):
    full = train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), tmp_path / "full", _config(), FINE_TUNING)
    assert full["global_step"] == 6

    out = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), out, _config(callbacks=[kill_at_step(4)]),
                 FINE_TUNING)
    assert not (out / RUN_FILE).exists() and not (out / "model.safetensors").exists()
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(PocketbertError, match="--resume"):
        train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), out, _config(), FINE_TUNING)

    resumed = train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), out, _config(resume=True), FINE_TUNING)
    assert resumed["global_step"] == full["global_step"] == 6
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-4)  # the whole run, not its resumed part
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    final_full, final_resumed = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name, tensor in final_full.items():
        assert torch.allclose(tensor, final_resumed[name], atol=1e-5), name
    with pytest.raises(PocketbertError, match="finished run"):
        train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), out, _config())


def test_tiny_distillation_end_to_end_loss_falls(tiny_bert_qa, squad, tmp_path):
    student = tmp_path / "student"
    assert main(["distill", "init", str(tiny_bert_qa), "--out", str(student)]) == 0
    out = tmp_path / "distilled"
    assert main(["distill", "qa", "--teacher", str(tiny_bert_qa), "--student", str(student), "--train", str(squad),
                 "--dev", str(squad), "--out", str(out), "--max-seq-len", "48", "--doc-stride", "16",
                 "--max-query-len", "16", "--max-steps", "24", "--batch-size", "8", "--lr", "2e-3",
                 "--logging-steps", "4", "--warmup", "0"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert all("loss_ce" in r and "loss_task" in r for r in records if "loss" in r)
    run = json.loads((out / RUN_FILE).read_text())
    assert run["loss_terms"]["ce (KL start/end, *T^2)"] == 0.5 and run["teacher"] == str(tiny_bert_qa)
    assert 0 <= run["final_dev"]["f1"] <= 100 and run["final_dev"]["count"] == len(load_squad(squad))
    assert run["tool_versions"]["torch"] and (out / "loss.png").is_file()
    # The result is a normal checkpoint the rest of the pipeline loads (QA head present, no token types).
    from pocketbert.modeling import load_qa_model
    loaded = load_qa_model(out)
    assert loaded.source["model_type"] == "distilbert"


def test_dev_scores_every_n_steps_give_the_curve(tiny_distilbert_qa, squad, tmp_path):
    run = train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), tmp_path / "run", _config(eval_steps=2),
                   FINE_TUNING)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["dev_f1"]) for r in records if "dev_f1" in r]
    assert [step for step, _ in curve] == [2, 4, 6]  # the last point is the final evaluation
    assert curve[-1][1] == run["final_dev"]["f1"]


def test_hidden_state_term_same_with_and_without_the_teacher_cache(tiny_bert_qa, squad, tmp_path):
    student = tmp_path / "student"
    assert main(["distill", "init", str(tiny_bert_qa), "--out", str(student)]) == 0
    loss = QALoss(tiny_bert_qa, alpha_cos=1.0)
    runs = [train_qa(student, QAData(squad, squad, QA_SMALL), tmp_path / name, _config(epochs=2, max_steps=-1,
                                                                                      teacher_cache=cached), loss)
            for name, cached in (("cached", True), ("uncached", False))]
    # The second epoch reads the teacher's logits and (fp16) hidden states from the cache.
    assert runs[0]["train_loss"] == pytest.approx(runs[1]["train_loss"], rel=1e-3)
    assert runs[0]["loss_terms"]["cos (last hidden states)"] == 1.0
    records = [json.loads(line) for line in (tmp_path / "cached" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss_cos"] >= 0 for r in records if "loss" in r)


def test_hidden_state_term_needs_the_teacher_width(tiny_bert_qa, tiny_distilbert_qa, squad, tmp_path):
    from transformers import AutoConfig, AutoModelForQuestionAnswering
    narrow_config = AutoConfig.from_pretrained(tiny_distilbert_qa)
    narrow_config.dim, narrow_config.hidden_dim = 32, 64
    narrow = tmp_path / "narrow"
    AutoModelForQuestionAnswering.from_config(narrow_config).save_pretrained(str(narrow))
    load_tokenizer(tiny_bert_qa).save_pretrained(str(narrow))
    with pytest.raises(PocketbertError, match="--alpha-cos 0"):
        train_qa(narrow, QAData(squad, squad, QA_SMALL), tmp_path / "out", _config(), QALoss(tiny_bert_qa, alpha_cos=1.0))
    assert not (tmp_path / "out").exists()


def test_finetune_qa_learns_the_tiny_task(tiny_distilbert_qa, squad, tmp_path):
    run = train_qa(tiny_distilbert_qa, QAData(squad, squad, QA_SMALL), tmp_path / "ft",
                   _config(max_steps=40, lr=3e-3, logging_steps=10), FINE_TUNING)
    assert run["teacher"] is None and run["fresh_qa_head"] is False
    assert run["final_dev"]["f1"] > 30
