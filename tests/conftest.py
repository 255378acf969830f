"""Tiny real models for the suite: 2 layers, hidden 64, the real uncased 30522 WordPiece vocab."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = dict(layers=2, hidden=64, heads=2, intermediate=128, max_positions=512)


def build_tiny_qa_checkpoint(folder: Path, architecture: str = "distilbert", seed: int = 0) -> Path:
    """Save a randomly initialised tiny *ForQuestionAnswering with the embedded teacher's tokenizer."""
    import torch
    from transformers import (BertConfig, BertForQuestionAnswering, DistilBertConfig,
                              DistilBertForQuestionAnswering)

    from pocketbert.modeling import embedded_teacher_dir, load_tokenizer

    torch.manual_seed(seed)
    if architecture == "bert":
        config = BertConfig(num_hidden_layers=TINY["layers"], hidden_size=TINY["hidden"],
                            num_attention_heads=TINY["heads"], intermediate_size=TINY["intermediate"],
                            max_position_embeddings=TINY["max_positions"])
        model = BertForQuestionAnswering(config)
    else:
        config = DistilBertConfig(n_layers=TINY["layers"], dim=TINY["hidden"], n_heads=TINY["heads"],
                                  hidden_dim=TINY["intermediate"], max_position_embeddings=TINY["max_positions"])
        model = DistilBertForQuestionAnswering(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    load_tokenizer(embedded_teacher_dir()).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_distilbert_qa(tmp_path_factory) -> Path:
    return build_tiny_qa_checkpoint(tmp_path_factory.mktemp("tiny-distilbert-qa"), "distilbert")


@pytest.fixture(scope="session")
def tiny_bert_qa(tmp_path_factory) -> Path:
    return build_tiny_qa_checkpoint(tmp_path_factory.mktemp("tiny-bert-qa"), "bert")
