"""Classification training: the distillation loss against a hand-computed number, the dev scores, a tiny
fine-tune -> init -> distill run whose outputs load as AutoModelForSequenceClassification with the data's labels,
resume after an interruption, and the refusals (labels that do not match, options out of range)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from pocketbert.cli import main
from pocketbert.data.labelled_text import load_classify_data
from pocketbert.distill.classify_train import FINE_TUNING, classification_scores, train_classifier
from pocketbert.distill.losses import classification_distillation_loss
from pocketbert.distill.trainer import RUN_FILE, TrainConfig
from pocketbert.errors import PocketbertError

LABELS = ["business", "sport", "tech"]
WORDS = {"business": "shares profits market bank", "sport": "goal match team coach", "tech": "phone software chip web"}


def test_loss_matches_a_hand_computed_value():
    # Teacher softmax at T=2 of [2 ln 3, 0] is [3/4, 1/4]; the student is uniform, so
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812, times T^2 = 0.523248; CE(uniform, class 0) = ln 2 = 0.693147.
    student, teacher = torch.zeros(1, 2), torch.tensor([[2 * math.log(3), 0.0]])
    loss, terms = classification_distillation_loss(student, teacher, torch.tensor([0]), temperature=2.0,
                                                    alpha_ce=0.5, alpha_cls=0.5)
    assert terms["ce"] == pytest.approx(0.523248, abs=1e-6) and terms["cls"] == pytest.approx(0.693147, abs=1e-6)
    assert float(loss) == pytest.approx(0.5 * 0.523248 + 0.5 * 0.693147, abs=1e-6)
    fine_tune, terms = classification_distillation_loss(student, None, torch.tensor([1]), 2.0, 0.0, 1.0)
    assert float(fine_tune) == pytest.approx(math.log(2), abs=1e-6) and set(terms) == {"cls"}


def test_scores_by_hand():
    # gold a a b c, predicted a b b a: accuracy 2/4; F1 a = 2*(1/2*1/2)/1 = 0.5, b = 2*(1/2)/(3/2) = 2/3, c = 0.
    scores = classification_scores([0, 0, 1, 2], [0, 1, 1, 0], ["a", "b", "c", "unused"])
    assert scores["accuracy"] == 50.0 and scores["count"] == 4
    assert scores["macro_f1"] == pytest.approx(100 * (0.5 + 2 / 3 + 0) / 3)  # "unused" neither gold nor predicted
    assert scores["per_label"]["b"] == {"precision": 50.0, "recall": 100.0, "f1": 66.67, "support": 1}


def _write_split(path, n, seed):
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        words = WORDS[label].split()
        rows.append({"text": " ".join(rng.choice(words) for _ in range(6 + i % 5)), "label": label})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify-data")
    (root / "labels.txt").write_text("".join(name + "\n" for name in LABELS))
    return _write_split(root / "train.jsonl", 24, 0), _write_split(root / "dev.jsonl", 9, 1)


def _config(**overrides):
    values = dict(max_steps=6, save_steps=2, batch_size=4, lr=1e-3, logging_steps=1, seed=7, warmup=0.0)
    values.update(overrides)
    return TrainConfig(**values)


def _id2label(folder):
    return AutoModelForSequenceClassification.from_pretrained(str(folder)).config.id2label


def test_finetune_init_distill_end_to_end(tiny_bert_qa, split, tmp_path, capsys):
    train, dev = split
    common = ["--train", str(train), "--dev", str(dev), "--max-seq-len", "16", "--batch-size", "8", "--lr", "1e-2",
              "--logging-steps", "5", "--warmup", "0"]
    teacher = tmp_path / "teacher"
    assert main(["finetune", "classify", "--model", str(tiny_bert_qa), "--out", str(teacher), "--max-steps", "20",
                 *common]) == 0
    assert "dev accuracy" in capsys.readouterr().out
    run = json.loads((teacher / RUN_FILE).read_text())
    assert run["fresh_classifier_head"] and run["labels"] == LABELS and run["teacher"] is None
    assert run["final_dev"]["accuracy"] > 80 and set(run["final_dev"]["per_label"]) == set(LABELS)
    assert _id2label(teacher) == dict(enumerate(LABELS))

    student = tmp_path / "student"
    assert main(["distill", "init", str(teacher), "--out", str(student), "--layers", "1"]) == 0
    assert "classification head copied" in capsys.readouterr().out
    assert _id2label(student) == dict(enumerate(LABELS))

    out = tmp_path / "distilled"
    assert main(["distill", "classify", "--teacher", str(teacher), "--student", str(student), "--out", str(out),
                 "--max-steps", "8", *common]) == 0
    run = json.loads((out / RUN_FILE).read_text())
    assert run["command"] == "distill classify" and not run["fresh_classifier_head"]
    assert run["loss_terms"] == {"ce (KL to the teacher's labels, *T^2)": 0.5, "cls (CE vs gold labels)": 0.5}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_ce" in r and "loss_cls" in r for r in records if "loss" in r)
    assert 0 <= run["final_dev"]["macro_f1"] <= 100 and run["final_dev"]["count"] == 9
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.model_type == "distilbert" and model.config.id2label == dict(enumerate(LABELS))
    assert (out / "loss.png").is_file() and (out / "tokenizer.json").is_file()


def test_resume_after_interruption_reaches_the_same_end(tiny_distilbert_qa, split, tmp_path, kill_at_step):
    data = load_classify_data(*split)
    full = train_classifier(tiny_distilbert_qa, data, tmp_path / "full", _config(), FINE_TUNING, max_seq_len=16)
    out = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_classifier(tiny_distilbert_qa, data, out, _config(callbacks=[kill_at_step(4)]), FINE_TUNING, 16)
    assert not (out / RUN_FILE).exists() and (out / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(PocketbertError, match="--resume"):
        train_classifier(tiny_distilbert_qa, data, out, _config(), FINE_TUNING, 16)
    resumed = train_classifier(tiny_distilbert_qa, data, out, _config(resume=True), FINE_TUNING, 16)
    assert resumed["global_step"] == full["global_step"] == 6
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-4)
    assert resumed["final_dev"] == full["final_dev"]
    final_full, final_resumed = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name, tensor in final_full.items():
        assert torch.allclose(tensor, final_resumed[name], atol=1e-5), name


def test_labels_that_do_not_match_are_refused(tiny_distilbert_qa, split, tmp_path):
    data = load_classify_data(*split)
    teacher = tmp_path / "teacher"
    train_classifier(tiny_distilbert_qa, data, teacher, _config(max_steps=1), FINE_TUNING, 16)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("train.jsonl", "dev.jsonl"):
        rows = [json.loads(line) for line in (split[0].parent / name).read_text().splitlines()]
        (other / name).write_text("".join(json.dumps({**r, "label": r["label"].upper()}) + "\n" for r in rows))
    other_data = load_classify_data(other / "train.jsonl", other / "dev.jsonl")
    with pytest.raises(PocketbertError, match="already a classifier for the labels"):
        train_classifier(teacher, other_data, tmp_path / "ft", _config(), FINE_TUNING, 16)
    from pocketbert.distill.classify_train import ClassifyLoss
    with pytest.raises(PocketbertError, match="teacher .* predicts the labels"):
        train_classifier(tiny_distilbert_qa, other_data, tmp_path / "d", _config(), ClassifyLoss(teacher), 16)
    assert not (tmp_path / "ft").exists() and not (tmp_path / "d").exists()


def test_options_out_of_range_are_one_line(tiny_distilbert_qa, split, tmp_path, capsys):
    train, dev = split
    base = ["finetune", "classify", "--model", str(tiny_distilbert_qa), "--train", str(train), "--dev", str(dev)]
    cases = [(["--max-seq-len", "4"], "--max-seq-len 4"), (["--max-seq-len", "4096"], "longer than the model's 512"),
             (["--lr", "0"], "--lr 0"), (["--max-train-examples", "0"], "--max-train-examples 0")]
    for extra, expected in cases:
        out = tmp_path / "run"
        assert main([*base, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and not out.exists(), (extra, err)


def test_teacher_cache_trains_the_same(tiny_distilbert_qa, split, tmp_path):
    from pocketbert.distill.classify_train import ClassifyLoss

    data = load_classify_data(*split)
    teacher = tmp_path / "teacher"
    train_classifier(tiny_distilbert_qa, data, teacher, _config(max_steps=2), FINE_TUNING, 16)
    runs = [train_classifier(tiny_distilbert_qa, data, tmp_path / name,
                             _config(max_steps=-1, epochs=2, batch_size=8, teacher_cache=cached), ClassifyLoss(teacher), 16)
            for name, cached in (("cached", True), ("uncached", False))]
    # The second epoch reads the teacher's logits from the cache.
    assert runs[0]["train_loss"] == pytest.approx(runs[1]["train_loss"], rel=1e-4)
    assert runs[0]["final_dev"] == runs[1]["final_dev"]
