"""The extractive-QA task as an exportable module, and the real inputs artifacts are validated on."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pocketbert.modeling import uses_token_type_ids
from pocketbert.qa import QAExample, prepare_features

# Finite, unlike finfo.min: fp16 runtimes would turn -inf scores into NaN (huggingface/exporters #74).
# exp(-10000) is exactly 0 in fp32, so outputs equal those of the boolean mask.
MASK_VALUE = -10000.0
OUTPUT_NAMES = ("start_logits", "end_logits")


class QAModule(nn.Module):
    """(input_ids, attention_mask) -> (start_logits, end_logits) for DistilBERT-style models.

    The additive [batch, 1, 1, seq] mask is built here from a subtract and a multiply, which every
    backend delegates, instead of the transformers mask builder (where/any/arange/index ops that
    XNNPACK and older TFLite runtimes leave on the CPU fallback).
    """

    input_names = ("input_ids", "attention_mask")

    def __init__(self, model):
        super().__init__()
        self.model = model

    @staticmethod
    def additive_mask(attention_mask):
        return (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * MASK_VALUE

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=self.additive_mask(attention_mask))
        return out.start_logits, out.end_logits


class QAModuleWithSegments(QAModule):
    """BERT-style models also take token_type_ids (question 0, context 1)."""

    input_names = ("input_ids", "attention_mask", "token_type_ids")

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=self.additive_mask(attention_mask),
                         token_type_ids=token_type_ids)
        return out.start_logits, out.end_logits


def exportable_qa(model) -> QAModule:
    return (QAModuleWithSegments if uses_token_type_ids(model) else QAModule)(model).eval()


# Real English question/context pairs: validation runs on text a user would send, not random ids.
VALIDATION_EXAMPLES = [
    QAExample("v1", "Who wrote the report?",
              "The report on coastal flooding was written by Maria Okafor, a hydrologist at the university, "
              "and published in March 2021 after three years of field measurements along the estuary."),
    QAExample("v2", "How many passengers did the airline carry?",
              "Despite rising fuel prices, the airline carried 4.2 million passengers last year, up from "
              "3.9 million, and its chief executive said ticket sales in Europe had never been stronger."),
]


def validation_inputs(tokenizer, input_names, length: int) -> dict[str, np.ndarray]:
    """Tokenised validation pairs padded to `length`: a [batch, length] int64 array per input name."""
    features = prepare_features(tokenizer, VALIDATION_EXAMPLES, max_seq_len=length,
                                doc_stride=max(1, min(128, length // 4)), max_query_len=max(1, length // 3))
    first_window = np.unique(features["example_index"], return_index=True)[1]
    return {name: features[name][first_window] for name in input_names}


def torch_reference(module: QAModule, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        start, end = module(*(torch.from_numpy(inputs[name]) for name in module.input_names))
    return start.numpy(), end.numpy()
