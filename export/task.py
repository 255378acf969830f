"""The extractive-QA task as an exportable module, the export cells refused per architecture, and the real
inputs artifacts are validated on.

Every artifact takes the tokenizer's 0/1 attention mask (1 = real token). How that mask reaches the model
is decided per architecture, because the architectures read it differently:
- "additive": BERT-style encoders add a [batch, 1, 1, seq] float mask to the attention scores. Building
  it here from a subtract and a multiply keeps transformers' mask builder (where/any/arange/index ops that
  XNNPACK and older TFLite runtimes leave on the CPU fallback) out of the graph.
- "binary": DeBERTa-v2 multiplies the embeddings by the mask and calls `mask.bool()`, so it must get the
  0/1 mask itself; an additive mask would zero every real token.
- "additive+local_window": ModernBERT alternates global layers with sliding-window layers; both additive
  masks are built here, the local one also masking keys further than local_attention // 2 away.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pocketbert.comparison import compare_logits
from pocketbert.errors import PocketbertError
from pocketbert.modeling import encoder_of, uses_token_type_ids
from pocketbert.qa import QAExample, QAWindow, prepare_features

# Finite, unlike finfo.min: fp16 runtimes would turn -inf scores into NaN (huggingface/exporters #74).
# exp(-10000) is exactly 0 in fp32, so outputs equal those of the boolean mask.
MASK_VALUE = -10000.0
OUTPUT_NAMES = ("start_logits", "end_logits")
# The wrapper only moves mask building into the graph; anything beyond float rounding changes the model.
WRAPPER_TOLERANCE = 1e-5
MASK_CONVERSIONS = {
    "additive": "inside the graph: (1 - mask) * -10000 added to the attention scores",
    "binary": "passed to the model as is: it multiplies the embeddings by the mask and masks attention with it",
    "additive+local_window": "inside the graph: (1 - mask) * -10000 for global layers; sliding-window layers also "
                             "get -10000 for keys more than local_attention // 2 tokens away",
}


# model_type -> {"format/precision" or "format": why it cannot be exported, and what works instead}. Refused up
# front, before any conversion; tests/test_architectures.py exports every cell not listed here.
EXPORT_REFUSALS: dict[str, dict[str, str]] = {
    "deberta-v2": {
        "coreml": "coremltools 9.0 cannot convert the `alias` op its relative-position attention leaves in the graph; "
                  "export onnx, tflite or executorch (XNNPACK) instead",
        "executorch/fp16": "fp16 is the Core ML delegate, where its float32-minimum attention mask overflows to -inf "
                           "and padded rows turn to NaN (seen by the Core ML reference evaluator); use --backend "
                           "xnnpack (fp32, int8)",
    },
}


def refusal_reason(model_type: str, format_name: str, precision: str) -> str | None:
    reasons = EXPORT_REFUSALS.get(model_type, {})
    return reasons.get(f"{format_name}/{precision}") or reasons.get(format_name)


def refusal(config, format_name: str, precision: str) -> str | None:
    """Why this architecture cannot be exported to this cell (one line, with what works instead), or None."""
    reason = refusal_reason(config.model_type, format_name, precision)
    if reason is None:
        return None
    return f"{encoder_of(config).display_name} cannot be exported to {format_name} {precision}: {reason}"


class QAModule(nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) -> (start_logits, end_logits), the mask as 0/1 ints.

    token_type_ids is an input only for encoders with segment embeddings (question 0, context 1).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.mask_kind = encoder_of(model.config).mask
        segments = uses_token_type_ids(model)
        self.input_names = ("input_ids", "attention_mask") + (("token_type_ids",) if segments else ())
        self.local_window = getattr(model.config, "local_attention", 0) // 2

    @staticmethod
    def additive_mask(attention_mask):
        return (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * MASK_VALUE

    def model_mask(self, attention_mask):
        if self.mask_kind == "binary":
            return attention_mask
        padding = self.additive_mask(attention_mask)
        if self.mask_kind == "additive":
            return padding
        positions = torch.arange(attention_mask.shape[1])
        too_far = (positions[None, :] - positions[:, None]).abs() > self.local_window
        return {"full_attention": padding, "sliding_attention": padding + too_far.to(torch.float32) * MASK_VALUE}

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=self.model_mask(attention_mask), **segments)
        return out.start_logits, out.end_logits


def exportable_qa(model) -> QAModule:
    return QAModule(model).eval()


# Real English question/context pairs: validation runs on text a user would send, not random ids. The first
# two are short (padded from about 64 tokens on); the third fills the longest windows, longer than any local
# attention window (ModernBERT's 128), so sliding-window layers are exercised on real tokens.
VALIDATION_EXAMPLES = [
    QAExample("v1", "Who wrote the report?",
              "The report on coastal flooding was written by Maria Okafor, a hydrologist at the university, "
              "and published in March 2021 after three years of field measurements along the estuary."),
    QAExample("v2", "How many passengers did the airline carry?",
              "Despite rising fuel prices, the airline carried 4.2 million passengers last year, up from "
              "3.9 million, and its chief executive said ticket sales in Europe had never been stronger."),
    QAExample("v3", "What did the engineers build first?",
              "The valley had flooded in four of the previous ten winters, and the town council finally agreed "
              "to a plan that the regional water authority had proposed years earlier. Before any work on the "
              "river itself could begin, the engineers built a temporary access road along the eastern bank, "
              "so that lorries carrying stone and steel would not have to cross the old market square. The road "
              "took eleven weeks to finish, partly because an unexpected spring was found under the former "
              "railway embankment. Once it was open, crews cleared the willow and alder that had grown into "
              "the channel, surveyed the river bed with sonar, and marked the places where the new walls "
              "would stand. The walls were made of reinforced concrete faced with local sandstone, a choice "
              "the council defended at length after residents complained about the cost. Upstream, a set of "
              "sluice gates was installed to hold back water during storms and release it slowly afterwards. "
              "A small museum in the old mill now displays photographs of the works, the original drawings, "
              "and a model of the valley showing how high the water rose in the worst flood, in January "
              "2014, when more than three hundred homes were damaged and the main bridge was closed for a "
              "month. Local schools visit the museum every spring, and the engineers who led the project "
              "still give talks there about how rivers behave and why the defences were designed as they "
              "were. The scheme has since been copied by two neighbouring towns, each adapting the sluice "
              "design to the shape of its own valley and to the money it could raise from national funds."),
]


def window_for(length: int) -> QAWindow:
    """Window settings that fit any length, short test lengths too, whatever special tokens the tokenizer adds."""
    return QAWindow(length, doc_stride=max(1, min(128, length // 4)), max_query_len=max(1, length // 3)).clamped()


def first_windows(tokenizer, examples, input_names, length: int) -> dict[str, np.ndarray]:
    """The first `length`-token window of each example, padded: a [examples, length] int64 array per input name."""
    features = prepare_features(tokenizer, examples, window_for(length))
    first_window = np.unique(features["example_index"], return_index=True)[1]
    return {name: features[name][first_window] for name in input_names}


def validation_inputs(tokenizer, input_names, length: int) -> dict[str, np.ndarray]:
    """Tokenised validation pairs padded to `length`: a [batch, length] int64 array per input name."""
    return first_windows(tokenizer, VALIDATION_EXAMPLES, input_names, length)


def torch_reference(module: QAModule, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the unmodified transformers model inside `module`, in eager PyTorch, on the tokenizer's own
    inputs: what every artifact is validated against."""
    model_inputs = {name: torch.from_numpy(inputs[name]) for name in module.input_names}
    with torch.no_grad():
        out = module.model(**model_inputs)
    return out.start_logits.numpy(), out.end_logits.numpy()


def wrapper_logits(module: QAModule, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the export wrapper (the graph that gets converted) on the same inputs."""
    with torch.no_grad():
        start, end = module(*(torch.from_numpy(inputs[name]) for name in module.input_names))
    return start.numpy(), end.numpy()


def check_wrapper(module: QAModule, tokenizer, lengths) -> dict:
    """Compare the export wrapper with the unmodified model; a wrapper that changes the outputs fails loudly."""
    worst = 0.0
    for length in lengths:
        inputs = validation_inputs(tokenizer, module.input_names, length)
        comparison = compare_logits(wrapper_logits(module, inputs), torch_reference(module, inputs),
                                    WRAPPER_TOLERANCE, mask=inputs["attention_mask"])
        worst = max(worst, comparison["max_abs_diff"])
        if not comparison["passed"]:
            raise PocketbertError(
                f"the export wrapper ({module.mask_kind} mask) changes {type(module.model).__name__}'s logits by "
                f"{comparison['max_abs_diff']:.2e} at length {length} (> {WRAPPER_TOLERANCE:.0e}); nothing was "
                "written — report this architecture as a bug")
    return {"max_abs_diff": worst, "tolerance": WRAPPER_TOLERANCE, "lengths": list(lengths), "passed": True,
            "mask": module.mask_kind}
