"""Build a DistilBERT student from a BERT-family teacher by copying every other layer.

The student keeps the teacher's width (hidden, heads, FFN, vocabulary, positions, activation), has half
its layers (or --layers N) and no token-type embeddings and no pooler. Copied: word and position
embeddings, the embedding LayerNorm, the chosen layers, and the MLM head when the teacher has one.
BERT always adds token-type embedding 0 to every token of a single-segment input, so that row is folded
into the position embeddings: on single-segment text the student then starts as the teacher with the
skipped layers removed. The student is saved as DistilBertForMaskedLM, or, when the teacher has a QA head,
as DistilBertForQuestionAnswering with that head copied: the student's last layer is the teacher's last,
so the head already fits it (measured on the demo data: dev F1 18 before any training, where a fresh head
needed ~100 distillation steps to get there). A teacher with a sequence-classification head gives a
DistilBertForSequenceClassification with the teacher's labels and head (see with_classifier_head).
"""
from __future__ import annotations

import copy
from pathlib import Path

from safetensors import safe_open

from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_dir, check_replaceable, write_json
from pocketbert.modeling import count_parameters, load_tokenizer

# BERT encoder-layer parameter name -> DistilBERT transformer-layer parameter name.
LAYER_NAME_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}
MLM_HEAD_NAME_MAP = {
    "cls.predictions.transform.dense": "vocab_transform",
    "cls.predictions.transform.LayerNorm": "vocab_layer_norm",
}


def default_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers; 12 -> 6 gives the paper's [0, 2, 4, 7, 9, 11], 6 -> 3 gives [0, 2, 5]."""
    if student_layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def parse_layer_map(text: str | None) -> list[int] | None:
    """--layer-map "0,2,4" as [0, 2, 4]; None when not given, so the evenly spaced default applies."""
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise PocketbertError(f"--layer-map '{text}' is not a comma-separated list of layer numbers, e.g. 0,2,4,7,9,11") from None


def load_teacher_for_init(teacher: str | Path):
    """(BertForMaskedLM, has_mlm_head) from any BERT checkpoint: BertModel, BertFor*, MiniLM."""
    # lazy: transformers' model classes and distill.trainer (the HF Trainer) cost seconds; `pocketbert --help`
    # imports this module (through demo.pipeline) and only building a student needs them.
    from transformers import AutoConfig, BertForMaskedLM

    from pocketbert.distill.trainer import load_pretrained

    config = load_pretrained(AutoConfig, teacher, "teacher")
    if config.model_type != "bert":
        raise PocketbertError(f"teacher '{teacher}' is a '{config.model_type}' model; distill init needs a BERT teacher (model_type bert)")
    model, info = load_pretrained(BertForMaskedLM, teacher, "teacher", output_loading_info=True)
    has_mlm_head = not any(key.startswith("cls.") for key in info.get("missing_keys", ()))
    return model.eval(), has_mlm_head


def build_student(teacher_model, has_mlm_head: bool, layer_map: list[int]):
    """A DistilBertForMaskedLM initialised from `teacher_model` (a BertForMaskedLM)."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM  # lazy: as in load_teacher_for_init

    tc = teacher_model.config
    if any(i < 0 or i >= tc.num_hidden_layers for i in layer_map):
        raise PocketbertError(f"layer map {layer_map} names layers outside the teacher's 0..{tc.num_hidden_layers - 1}")
    if getattr(tc, "position_embedding_type", "absolute") != "absolute":
        raise PocketbertError(f"teacher uses '{tc.position_embedding_type}' position embeddings; DistilBERT needs absolute ones")
    config = DistilBertConfig(
        vocab_size=tc.vocab_size, max_position_embeddings=tc.max_position_embeddings, sinusoidal_pos_embds=False,
        n_layers=len(layer_map), n_heads=tc.num_attention_heads, dim=tc.hidden_size, hidden_dim=tc.intermediate_size,
        dropout=tc.hidden_dropout_prob, attention_dropout=tc.attention_probs_dropout_prob, activation=tc.hidden_act,
        initializer_range=tc.initializer_range, pad_token_id=tc.pad_token_id,
    )
    student = DistilBertForMaskedLM(config)
    source = teacher_model.state_dict()
    target = {}
    emb = "bert.embeddings"
    target["distilbert.embeddings.word_embeddings.weight"] = source[f"{emb}.word_embeddings.weight"]
    target["distilbert.embeddings.position_embeddings.weight"] = (
        source[f"{emb}.position_embeddings.weight"] + source[f"{emb}.token_type_embeddings.weight"][0])
    for suffix in ("weight", "bias"):
        target[f"distilbert.embeddings.LayerNorm.{suffix}"] = source[f"{emb}.LayerNorm.{suffix}"]
    for student_index, teacher_index in enumerate(layer_map):
        for bert_name, distil_name in LAYER_NAME_MAP.items():
            for suffix in ("weight", "bias"):
                target[f"distilbert.transformer.layer.{student_index}.{distil_name}.{suffix}"] = \
                    source[f"bert.encoder.layer.{teacher_index}.{bert_name}.{suffix}"]
    if has_mlm_head:
        for bert_name, distil_name in MLM_HEAD_NAME_MAP.items():
            for suffix in ("weight", "bias"):
                target[f"{distil_name}.{suffix}"] = source[f"{bert_name}.{suffix}"]
        target["vocab_projector.bias"] = source["cls.predictions.bias"]
    missing = student.load_state_dict({k: v.clone() for k, v in target.items()}, strict=False).missing_keys
    # vocab_projector.weight is tied to the word embeddings; anything else missing means a naming bug.
    leftover = [k for k in missing if k != "vocab_projector.weight" and (has_mlm_head or not k.startswith("vocab_"))]
    assert not leftover, leftover
    student.tie_weights()
    return student


def teacher_qa_head(teacher: str | Path):
    """The teacher's qa_outputs weights when its checkpoint has them, else None."""
    for weights in sorted(Path(teacher).glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            names = [name for name in handle.keys() if name.startswith("qa_outputs.")]
            if names:
                return {name.removeprefix("qa_outputs."): handle.get_tensor(name) for name in names}
    return None


def with_qa_head(student, qa_head: dict):
    """The same student encoder under DistilBertForQuestionAnswering with the given head weights."""
    from transformers import DistilBertForQuestionAnswering  # lazy: as in load_teacher_for_init

    qa_student = DistilBertForQuestionAnswering(student.config)
    qa_student.distilbert.load_state_dict(student.distilbert.state_dict())
    qa_student.qa_outputs.load_state_dict(qa_head)
    return qa_student


def teacher_classifier_head(teacher: str | Path):
    """A BERT teacher's sequence-classification head as DistilBERT names it (pooler dense -> pre_classifier,
    classifier -> classifier) when its checkpoint has one, else None."""
    head = {}
    for weights in sorted(Path(teacher).glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            for name in handle.keys():
                if name.startswith("classifier."):
                    head[name] = handle.get_tensor(name)
                elif name.removeprefix("bert.").startswith("pooler.dense."):
                    head["pre_classifier." + name.rsplit(".", 1)[1]] = handle.get_tensor(name)
    return head if any(name.startswith("classifier.") for name in head) else None


def with_classifier_head(student, head: dict, teacher_config):
    """The same student encoder under DistilBertForSequenceClassification with the teacher's labels and head.
    BERT's pooler squashes with tanh where DistilBERT's pre_classifier uses ReLU, so the copied head is a start
    that distillation adjusts, not an exact copy (a teacher without a pooler leaves pre_classifier fresh). Measured
    on the BBC topics (3 of the fine-tuned MiniLM's 6 layers, before any training): dev accuracy 93.3% with the
    copied head, 20.6% with a fresh one."""
    from transformers import DistilBertForSequenceClassification  # lazy: as in load_teacher_for_init

    config = copy.deepcopy(student.config)
    config.id2label, config.label2id = dict(teacher_config.id2label), dict(teacher_config.label2id)
    config.problem_type = "single_label_classification"
    classifier_student = DistilBertForSequenceClassification(config)
    classifier_student.distilbert.load_state_dict(student.distilbert.state_dict())
    missing = classifier_student.load_state_dict(head, strict=False).missing_keys
    assert all(key.startswith(("distilbert.", "pre_classifier.")) for key in missing), missing
    return classifier_student


def init_student(teacher: str | Path, out: str | Path, layers: int | None = None,
                 layer_map: list[int] | None = None, force: bool = False) -> dict:
    """`pocketbert distill init`: write the student checkpoint + tokenizer; returns a summary."""
    check_replaceable(out, force)  # before the teacher loads; atomic_dir checks again under its lock
    teacher_model, has_mlm_head = load_teacher_for_init(teacher)
    teacher_layers = teacher_model.config.num_hidden_layers
    if layer_map is None:
        n = layers or max(1, teacher_layers // 2)
        layer_map = default_layer_map(teacher_layers, n)
    elif layers is not None and layers != len(layer_map):
        raise PocketbertError(f"--layers {layers} disagrees with --layer-map of {len(layer_map)} layers; pass one of them")
    tokenizer = load_tokenizer(teacher)
    student = build_student(teacher_model, has_mlm_head, layer_map)
    qa_head = teacher_qa_head(teacher)
    classifier_head = teacher_classifier_head(teacher) if qa_head is None else None
    if qa_head is not None:
        student = with_qa_head(student, qa_head)
    elif classifier_head is not None:
        student = with_classifier_head(student, classifier_head, teacher_model.config)
    with atomic_dir(out, force=force) as tmp:
        student.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        # The record that marks the folder as pocketbert's: a later --force may replace it (fsutil.OUTPUT_RECORDS).
        write_json(tmp / "student.json", {"generator": "pocketbert.distill.init", "teacher": str(teacher),
                                          "layer_map": layer_map})
    return {
        "teacher": str(teacher), "teacher_layers": teacher_layers, "layer_map": layer_map,
        "teacher_parameters": count_parameters(teacher_model.bert),
        "student_parameters": count_parameters(student.distilbert),
        "mlm_head_copied": has_mlm_head, "qa_head_copied": qa_head is not None,
        "classifier_head_copied": classifier_head is not None, "out": str(out),
    }
