"""`distill init`: exactly the mapped teacher tensors land in the student; no token types, no pooler."""
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForQuestionAnswering, BertConfig, BertForMaskedLM, BertModel, DistilBertForMaskedLM

from pocketbert.cli import main
from pocketbert.distill.student import LAYER_NAME_MAP, build_student, default_layer_map, init_student
from pocketbert.errors import PocketbertError
from pocketbert.modeling import embedded_teacher_dir, load_tokenizer


def _tiny_bert_mlm(layers=4):
    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=layers, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    return BertForMaskedLM(config).eval()


def test_default_layer_map_matches_the_paper():
    assert default_layer_map(12, 6) == [0, 2, 4, 7, 9, 11]
    assert default_layer_map(6, 3) == [0, 2, 5]


def test_init_copies_mapped_layers_and_drops_token_types_and_pooler(tiny_bert_qa, tmp_path):
    out = tmp_path / "student"
    assert main(["distill", "init", str(tiny_bert_qa), "--out", str(out), "--layer-map", "1"]) == 0
    teacher = load_file(str(tiny_bert_qa / "model.safetensors"))
    student = load_file(str(out / "model.safetensors"))
    assert not any("token_type" in k or "pooler" in k for k in student)
    # A QA teacher's head is copied: the student's last layer is the teacher's last.
    for suffix in ("weight", "bias"):
        assert torch.equal(student[f"qa_outputs.{suffix}"], teacher[f"qa_outputs.{suffix}"])
    for bert_name, distil_name in LAYER_NAME_MAP.items():
        for suffix in ("weight", "bias"):
            assert torch.equal(student[f"distilbert.transformer.layer.0.{distil_name}.{suffix}"],
                               teacher[f"bert.encoder.layer.1.{bert_name}.{suffix}"])
    assert torch.equal(student["distilbert.embeddings.word_embeddings.weight"],
                       teacher["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(student["distilbert.embeddings.position_embeddings.weight"],
                       teacher["bert.embeddings.position_embeddings.weight"] + teacher["bert.embeddings.token_type_embeddings.weight"][0])
    assert torch.equal(student["distilbert.embeddings.LayerNorm.weight"], teacher["bert.embeddings.LayerNorm.weight"])
    model = AutoModelForQuestionAnswering.from_pretrained(str(out))
    assert model.config.model_type == "distilbert" and model.config.n_layers == 1 and model.config.dim == 64
    assert load_tokenizer(out).get_vocab() == load_tokenizer(tiny_bert_qa).get_vocab()


def test_student_with_all_layers_reproduces_the_teacher_on_single_segment_text():
    teacher = _tiny_bert_mlm(layers=2)
    student = build_student(teacher, has_mlm_head=True, layer_map=[0, 1]).eval()
    ids = torch.randint(5, 1000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask).logits
        got = student(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(got[mask.bool()], expected[mask.bool()], atol=1e-4)


def test_bert_base_parameter_counts():
    teacher = BertForMaskedLM(BertConfig())
    student = build_student(teacher, has_mlm_head=True, layer_map=default_layer_map(12, 6))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(BertModel(BertConfig())) == 109_482_240  # with pooler
    assert count(student.distilbert) == 66_362_880


def test_embedded_minilm_has_no_mlm_head_and_gets_three_layers(tmp_path):
    summary = init_student(embedded_teacher_dir(), tmp_path / "s")
    assert summary["layer_map"] == [0, 2, 5] and summary["mlm_head_copied"] is False
    assert summary["qa_head_copied"] is False
    assert DistilBertForMaskedLM.from_pretrained(str(tmp_path / "s")).config.n_layers == 3


def test_bad_layer_map_is_one_line_error(tiny_bert_qa, tmp_path):
    with pytest.raises(PocketbertError, match="outside"):
        init_student(tiny_bert_qa, tmp_path / "s", layer_map=[0, 5])
    assert main(["distill", "init", str(tiny_bert_qa), "--out", str(tmp_path / "t"), "--layer-map", "a,b"]) == 2
