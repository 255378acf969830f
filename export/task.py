"""A model of any task (pocketbert/tasks.py) as an exportable module, and the export cells refused per architecture.

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

from pocketbert.errors import PocketbertError
from pocketbert.modeling import encoder_of, uses_token_type_ids
from pocketbert.reference import torch_reference, validation_inputs
from pocketbert.rules import compare_logits, output_key
from pocketbert.tasks import task_of_model

# Finite, unlike finfo.min: fp16 runtimes would turn -inf scores into NaN (huggingface/exporters #74).
# exp(-10000) is exactly 0 in fp32, so outputs equal those of the boolean mask.
MASK_VALUE = -10000.0
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
    """Why a model type cannot be exported to a format (at this precision, or at all), from EXPORT_REFUSALS; None
    when nothing is known to stop it. `refusal` words it for the user."""
    reasons = EXPORT_REFUSALS.get(model_type, {})
    return reasons.get(f"{format_name}/{precision}") or reasons.get(format_name)


def refusal(config, format_name: str, precision: str) -> str | None:
    """Why this architecture cannot be exported to this cell (one line, with what works instead), or None."""
    reason = refusal_reason(config.model_type, format_name, precision)
    if reason is None:
        return None
    return f"{encoder_of(config).display_name} cannot be exported to {format_name} {precision}: {reason}"


class TaskModule(nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) -> the task's outputs, the mask as 0/1 ints: (start_logits,
    end_logits) for QA, (logits,) over the labels for classification.

    token_type_ids is an input only for encoders with segment embeddings (question 0, context 1).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.task = task_of_model(model)
        self.output_names = self.task.outputs
        self.mask_kind = encoder_of(model.config).mask
        segments = uses_token_type_ids(model)
        self.input_names = ("input_ids", "attention_mask") + (("token_type_ids",) if segments else ())
        self.local_window = getattr(model.config, "local_attention", 0) // 2

    @staticmethod
    def additive_mask(attention_mask):
        """The 0/1 attention mask as the additive [batch, 1, 1, seq] float mask: 0 where attended, MASK_VALUE at
        padding, built inside the graph so apps feed only the 0/1 mask."""
        return (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * MASK_VALUE

    def model_mask(self, attention_mask):
        """The mask in the form this encoder takes: the 0/1 mask, the additive mask, or (local attention)
        additive masks for full and sliding-window layers."""
        if self.mask_kind == "binary":
            return attention_mask
        padding = self.additive_mask(attention_mask)
        if self.mask_kind == "additive":
            return padding
        positions = torch.arange(attention_mask.shape[1])
        too_far = (positions[None, :] - positions[:, None]).abs() > self.local_window
        return {"full_attention": padding, "sliding_attention": padding + too_far.to(torch.float32) * MASK_VALUE}

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        """The task's outputs (a tuple) for a batch of inputs; token_type_ids only where the encoder has segments."""
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=self.model_mask(attention_mask), **segments)
        return tuple(getattr(out, name) for name in self.output_names)

    def output_mask(self, inputs: dict[str, np.ndarray]):
        """What the rulebook compares: the attention mask where outputs run over positions, None over labels."""
        return inputs["attention_mask"] if self.task.masked else None

    @property
    def output_keys(self) -> list[str]:
        """The outputs' short keys in verdicts (start, end; logits)."""
        return [output_key(name) for name in self.output_names]


def exportable(model) -> TaskModule:
    """`model` (a *ForQuestionAnswering or *ForSequenceClassification) wrapped as the TaskModule every exporter
    converts, in eval mode."""
    return TaskModule(model).eval()


def wrapper_logits(module: TaskModule, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Outputs of the export wrapper (the graph that gets converted) on the same inputs."""
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(inputs[name]) for name in module.input_names))
    return tuple(output.numpy() for output in outputs)


def check_wrapper(module: TaskModule, tokenizer, lengths) -> dict:
    """Compare the export wrapper with the unmodified model; a wrapper that changes the outputs fails loudly."""
    worst = 0.0
    for length in lengths:
        inputs = validation_inputs(tokenizer, module.input_names, length, module.task)
        comparison = compare_logits(wrapper_logits(module, inputs), torch_reference(module, inputs),
                                    WRAPPER_TOLERANCE, mask=module.output_mask(inputs), names=module.output_keys)
        worst = max(worst, comparison["max_abs_diff"])
        if not comparison["passed"]:
            raise PocketbertError(
                f"the export wrapper ({module.mask_kind} mask) changes {type(module.model).__name__}'s logits by "
                f"{comparison['max_abs_diff']:.2e} at length {length} (> {WRAPPER_TOLERANCE:.0e}); nothing was "
                "written — report this architecture as a bug")
    return {"max_abs_diff": worst, "tolerance": WRAPPER_TOLERANCE, "lengths": list(lengths), "passed": True,
            "mask": module.mask_kind}
