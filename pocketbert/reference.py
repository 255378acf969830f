"""Reference inputs and outputs: the real tokenised inputs every artifact is validated and timed on (QA windows of a
question and its context; for classification the same English texts alone), and the outputs of the model it came
from on them. Export validation, bench, eval, peers and the device harness all take
their inputs from here, and judge the outputs by the rulebook (pocketbert/rules.py)."""
from __future__ import annotations

import numpy as np
import torch

from pocketbert.qa import DOC_STRIDE, QAExample, QAWindow, prepare_features
from pocketbert.tasks import QUESTION_ANSWERING, Task

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
    return QAWindow(length, doc_stride=max(1, min(DOC_STRIDE, length // 4)), max_query_len=max(1, length // 3)).clamped()


def first_windows(tokenizer, examples, input_names, length: int) -> dict[str, np.ndarray]:
    """The first `length`-token window of each example, padded: a [examples, length] int64 array per input name."""
    features = prepare_features(tokenizer, examples, window_for(length))
    first_window = np.unique(features["example_index"], return_index=True)[1]
    return {name: features[name][first_window] for name in input_names}


def text_rows(tokenizer, texts, input_names, length: int) -> dict[str, np.ndarray]:
    """Single texts (a classifier's inputs) tokenised, truncated and padded to `length`: [texts, length] int64 arrays."""
    encoded = tokenizer(list(texts), truncation=True, max_length=length, padding="max_length", return_tensors="np",
                        return_token_type_ids=True)
    return {name: np.asarray(encoded[name], dtype=np.int64) for name in input_names}


def validation_texts() -> list[str]:
    """The classifier's validation inputs: the validation pairs' questions and contexts as texts of their own, so
    rows run from a few tokens (padded) to full windows."""
    return [text for example in VALIDATION_EXAMPLES for text in (example.question, example.context)]


def validation_inputs(tokenizer, input_names, length: int, task: Task = QUESTION_ANSWERING) -> dict[str, np.ndarray]:
    """Tokenised validation inputs padded to `length` (QA pairs, or texts for a classifier): a [batch, length] int64
    array per input name."""
    if not task.masked:
        return text_rows(tokenizer, validation_texts(), input_names, length)
    return first_windows(tokenizer, VALIDATION_EXAMPLES, input_names, length)


def model_outputs(model, task: Task, inputs: dict[str, np.ndarray], input_names) -> tuple[np.ndarray, ...]:
    """A transformers model's outputs named by the task (start/end logits, or logits), as numpy, on `inputs`."""
    model_inputs = {name: torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in input_names}
    with torch.no_grad():
        out = model(**model_inputs)
    return tuple(getattr(out, name).float().numpy() for name in task.outputs)


def torch_reference(module, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Outputs of the unmodified transformers model inside `module` (export's TaskModule: its `.model`, `.task` and
    `.input_names`), in eager PyTorch, on the tokenizer's own inputs: what every artifact is judged against."""
    return model_outputs(module.model, module.task, inputs, module.input_names)
