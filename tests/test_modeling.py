"""Model loading: presets, the embedded teacher, tokenizers."""
from __future__ import annotations

import pytest

from pocketbert.errors import PocketbertError
from pocketbert.modeling import embedded_teacher_dir, load_qa_model, load_tokenizer, uses_token_type_ids


def test_presets_are_standard_sizes_and_labelled_random():
    loaded = load_qa_model("distilbert-base")
    assert loaded.source["parameters"] == 66_364_418
    assert loaded.source["random_weights"] is True and loaded.source["preset"] == "distilbert-base"
    assert not uses_token_type_ids(loaded.model)


def test_embedded_teacher_tokenizer_is_the_real_uncased_vocab():
    tokenizer = load_tokenizer(embedded_teacher_dir())
    assert len(tokenizer) == 30522
    assert tokenizer.tokenize("Hello World") == ["hello", "world"]


def test_token_type_ids_follow_the_architecture(tiny_bert_qa, tiny_distilbert_qa):
    assert uses_token_type_ids(load_qa_model(tiny_bert_qa).model)
    assert not uses_token_type_ids(load_qa_model(tiny_distilbert_qa).model)


def test_unknown_hub_id_offline_is_one_line():
    with pytest.raises(PocketbertError, match="local checkpoint directory"):
        load_qa_model("someone/no-such-model")
