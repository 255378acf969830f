"""`distill mlm` and `distill fit-mlm-head` on tiny models: the loss terms used are said, the teacher stays frozen."""
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForMaskedLM

from pocketbert.cli import main
from pocketbert.modeling import embedded_teacher_dir, load_tokenizer

TEXT = ("The river runs through the old town and past the mill. Traders came by boat every spring.\n"
        "In 1820 the council built a stone bridge; it still carries carts and cyclists today.\n") * 12


@pytest.fixture(scope="module")
def tiny_bert_mlm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert-mlm")
    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(str(folder))
    load_tokenizer(embedded_teacher_dir()).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TEXT)
    return path


TRAIN = ["--seq-len", "32", "--max-steps", "3", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "2"]


def test_mlm_distillation_uses_all_three_terms(tiny_bert_mlm, text_file, tmp_path, capsys):
    student = tmp_path / "student"
    assert main(["distill", "init", str(tiny_bert_mlm), "--out", str(student), "--layers", "1"]) == 0
    out = tmp_path / "mlm"
    assert main(["distill", "mlm", "--teacher", str(tiny_bert_mlm), "--student", str(student), "--text", str(text_file),
                 "--out", str(out), *TRAIN]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["loss_terms"] == {"ce": 5.0, "mlm": 2.0, "cos": 1.0} and run["global_step"] == 3
    record = next(json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines())
    assert {"loss_ce", "loss_mlm", "loss_cos"} <= set(record)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_teacher_without_mlm_head_disables_ce_and_says_how_to_fix_it(tiny_bert_qa, text_file, tmp_path, capsys):
    student = tmp_path / "student"
    assert main(["distill", "init", str(tiny_bert_qa), "--out", str(student), "--layers", "1"]) == 0
    out = tmp_path / "mlm"
    assert main(["distill", "mlm", "--teacher", str(tiny_bert_qa), "--student", str(student), "--text", str(text_file),
                 "--out", str(out), "--alpha-mlm", "0", *TRAIN]) == 0
    assert "L_ce disabled: teacher has no MLM head; fit one with" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["loss_terms"] == {"ce": 0.0, "mlm": 0.0, "cos": 1.0}
    assert any("L_ce disabled" in note for note in run["notes"])


def test_fit_mlm_head_trains_only_the_head(tiny_bert_qa, text_file, tmp_path):
    out = tmp_path / "with-head"
    assert main(["distill", "fit-mlm-head", "--teacher", str(tiny_bert_qa), "--text", str(text_file),
                 "--out", str(out), *TRAIN]) == 0
    teacher, fitted = load_file(str(tiny_bert_qa / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name, tensor in fitted.items():
        if name.startswith("bert.") and name in teacher:
            assert torch.equal(tensor, teacher[name]), name
    assert any(name.startswith("cls.predictions.transform") for name in fitted)
    # The fitted teacher now enables L_ce.
    student = tmp_path / "student"
    assert main(["distill", "init", str(out), "--out", str(student), "--layers", "1"]) == 0
    assert main(["distill", "mlm", "--teacher", str(out), "--student", str(student), "--text", str(text_file),
                 "--out", str(tmp_path / "mlm"), *TRAIN]) == 0
    assert json.loads((tmp_path / "mlm" / "run.json").read_text())["loss_terms"]["ce"] == 5.0
