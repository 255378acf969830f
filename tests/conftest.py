"""Tiny real models for the suite: 2 layers, hidden 64, with the tokenizer kind each architecture ships with.

WordPiece models use the embedded teacher's real uncased 30522 vocab. BPE (RoBERTa, ModernBERT) and
SentencePiece (XLM-R, ALBERT, DeBERTa-v2) tokenizers are trained here on a few sentences, since no hub is
reachable; they tokenise like the real ones (byte-level BPE, unigram pieces), only with a small vocabulary.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# --- Parallel runs: `make test` is `pytest -n 2 --dist loadfile --no-loadscope-reorder` (pytest-xdist) ----------------
# "gw0", "gw1", ... in an xdist worker; None in a plain `pytest` run, which none of this changes (same tests, same order).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
# Each file runs whole on one worker, in its own order, so its module fixtures are made once (xdist's loadfile),
# except these, whose tests are independent and share only the cached exports below: they are spread test by test,
# after everything else, which also evens out the two workers' ends.
SPREAD_FILES = {"test_architectures.py"}
# Files that share a resource and must not run at the same time, by group: both drive Chromium (and its WASM runtimes).
SHARED_GROUPS = {"test_device_browser.py": "browser", "test_web_qa_page.py": "browser"}
# The slowest files first (longest-processing-time order), so that no long file is started last; the others follow
# in collection order. Measured on the 2-core CI machine; a file missing here only costs balance, never a test.
SLOW_FIRST = ["test_demo.py", "test_executorch_int4.py", "test_bench.py", "test_export_executorch.py",
              "test_export_coreml.py", "test_device_board.py", "test_safety.py", "test_loaders.py", "test_distill_qa.py",
              "test_distill_ablation.py", "test_bench_gemm.py", "test_classify_train.py", "test_device_mobile.py",
              "test_op_profile.py", "test_device.py", "test_export_tflite.py", "test_a16w8.py", "test_bench_peers.py"]


def pytest_configure(config):
    if XDIST_WORKER:
        # Two workers on two cores: one thread each, instead of two each fighting for the other's core. Code that
        # takes a --threads setting (bench, device, op-profile) still sets its own.
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if not XDIST_WORKER:
        return
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    last = len(rank) + 1
    # A stable sort: every file keeps its own order. Both workers sort alike, as xdist requires.
    items.sort(key=lambda item: last if item.path.name in SPREAD_FILES else rank.get(item.path.name, len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with SPREAD_FILES test by test and SHARED_GROUPS together. (Not xdist_group marks and
    --dist loadgroup: xdist 3.8 renames item._nodeid for those, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            name = file.rsplit("/", 1)[-1]
            return nodeid if name in SPREAD_FILES else SHARED_GROUPS.get(name, file)

    return FileScheduling(config, log)


@pytest.fixture(autouse=True)
def _no_signal_record_left_over():
    """A test that interrupts itself (test_reliability's swallowed Ctrl-C) leaves pocketbert.fsutil's record of the
    signal behind; the next export_model called outside the CLI in that process would then raise KeyboardInterrupt
    at its commit and end the whole run. Each test starts with no record, as each CLI command does."""
    yield
    import sys

    fsutil = sys.modules.get("pocketbert.fsutil")
    if fsutil is not None and getattr(fsutil, "_received_signals", None):
        fsutil._received_signals.clear()


def _shared_root(tmp_path_factory) -> Path:
    """One folder per run: under xdist the workers' common parent of their basetemps, so what one worker builds the
    other reuses; in a plain run the session's own basetemp."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if XDIST_WORKER else base) / "pocketbert-shared"
    root.mkdir(exist_ok=True)
    return root


_BUILT: dict[str, object] = {}


def build_once(tmp_path_factory, name: str, build):
    """`build(folder)` once per run, by whichever worker asks first; the other waits on its file lock, then gets the
    same folder and (pickled) what build returned. A build that raises keeps nothing: the next asker tries again."""
    from filelock import FileLock

    root = _shared_root(tmp_path_factory)
    folder, result = root / name, root / f"{name}.pickle"
    if str(folder) not in _BUILT:
        with FileLock(str(root / f"{name}.lock")):
            if result.is_file():
                value = pickle.loads(result.read_bytes())
            else:
                shutil.rmtree(folder, ignore_errors=True)
                value = build(folder)
                result.write_bytes(pickle.dumps(value))
        _BUILT[str(folder)] = value
    return _BUILT[str(folder)]


@pytest.fixture(scope="session")
def export_once(tmp_path_factory):
    """`export_once(checkpoint, format, out, **options)`: export_model with the same arguments and return value, but
    each (checkpoint, format, options) is exported once per run, whichever file and worker asks; `out` gets a copy of
    that export, so a test may change its own copy."""
    def export(checkpoint, format_name: str, out, **options) -> dict:
        from pocketbert.export.api import export_model

        key = json.dumps([str(Path(checkpoint).resolve()), format_name, options], sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        name = f"export-{Path(checkpoint).name}-{format_name}-{options.get('precision', 'fp32')}-{digest}"
        manifest = build_once(tmp_path_factory, name,
                              lambda folder: export_model(str(checkpoint), format_name, folder, **options))
        shutil.copytree(_shared_root(tmp_path_factory) / name, out, symlinks=True)
        return manifest

    return export

TINY = dict(layers=2, hidden=64, heads=2, intermediate=128, max_positions=512)
ARCHITECTURES = ("bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "mobilebert", "deberta-v2",
                 "modernbert")
# Smaller than the test lengths, so the sliding-window layers differ from full attention in every test.
TINY_MODERNBERT_LOCAL_ATTENTION = 16

TOKENIZER_TRAINING_TEXT = [
    "The report on coastal flooding was written by Maria Okafor, a hydrologist at the university.",
    "Despite rising fuel prices, the airline carried 4.2 million passengers last year, up from 3.9 million.",
    "Who wrote the report? How many passengers did the airline carry? When was it published?",
    "Its chief executive said ticket sales in Europe had never been stronger, and shares rose in March 2021.",
    "The river crossed three valleys before it reached the estuary, where engineers measured the tide.",
    "A new bridge opened in the city centre after four years of work, costing 120 million euros.",
]


def _training_text() -> list[str]:
    # The validation pairs too, so that their words are whole tokens and short pairs leave room for padding.
    from pocketbert.reference import VALIDATION_EXAMPLES

    return TOKENIZER_TRAINING_TEXT + [text for ex in VALIDATION_EXAMPLES for text in (ex.question, ex.context)]


def _bpe_tokenizer():
    """A RoBERTa-style byte-level BPE tokenizer (vocab.json + merges.txt world)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(_training_text(), vocab_size=1000, special_tokens=specials, show_progress=False)
    model = json.loads(trainer._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges)


def _sentencepiece_tokenizer(folder: Path, architecture: str):
    """A SentencePiece unigram tokenizer whose ids match the .model file saved next to the checkpoint."""
    import io

    import sentencepiece
    from transformers import AlbertTokenizer, DebertaV2Tokenizer, XLMRobertaTokenizer

    if architecture == "xlm-roberta":
        cls, file_name, lower = XLMRobertaTokenizer, "sentencepiece.bpe.model", False
        ids = dict(bos_id=0, pad_id=1, eos_id=2, unk_id=3, bos_piece="<s>", pad_piece="<pad>", eos_piece="</s>",
                   unk_piece="<unk>")
        extra = ["<mask>"]
    elif architecture == "albert":
        cls, file_name, lower = AlbertTokenizer, "spiece.model", True
        ids = dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>", bos_piece="[CLS]",
                   eos_piece="[SEP]")
        extra = ["[MASK]"]
    else:
        cls, file_name, lower = DebertaV2Tokenizer, "spm.model", False
        ids = dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
                   unk_piece="[UNK]")
        extra = ["[MASK]"]
    model = io.BytesIO()
    text = [s.lower() for s in _training_text()] if lower else _training_text()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model, vocab_size=1000, hard_vocab_limit=False,
        model_type="unigram", user_defined_symbols=extra, minloglevel=2, **ids)
    (folder / file_name).write_bytes(model.getvalue())
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    if cls is AlbertTokenizer:
        return cls(vocab=vocab, do_lower_case=True)
    if cls is DebertaV2Tokenizer:
        return cls(vocab=vocab, unk_id=ids["unk_id"])
    return cls(vocab=vocab)


def tiny_tokenizer(folder: Path, architecture: str):
    from pocketbert.modeling import embedded_teacher_dir, load_tokenizer

    if architecture in ("roberta", "modernbert"):
        return _bpe_tokenizer()
    if architecture in ("xlm-roberta", "albert", "deberta-v2"):
        return _sentencepiece_tokenizer(folder, architecture)
    return load_tokenizer(embedded_teacher_dir())


def tiny_config(architecture: str, tokenizer, **overrides):
    import transformers

    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_hidden_layers=TINY["layers"],
                  hidden_size=TINY["hidden"], num_attention_heads=TINY["heads"],
                  intermediate_size=TINY["intermediate"], max_position_embeddings=TINY["max_positions"])
    if architecture == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=len(tokenizer), n_layers=TINY["layers"], dim=TINY["hidden"], n_heads=TINY["heads"],
            hidden_dim=TINY["intermediate"], max_position_embeddings=TINY["max_positions"], **overrides)
    if architecture in ("roberta", "xlm-roberta"):
        # Real checkpoints: one token type, and positions start after the padding index (512 + 2 slots).
        cls = transformers.RobertaConfig if architecture == "roberta" else transformers.XLMRobertaConfig
        return cls(**{**common, "max_position_embeddings": TINY["max_positions"] + 2}, type_vocab_size=1,
                   bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, **overrides)
    if architecture == "albert":
        return transformers.AlbertConfig(**common, embedding_size=32, **overrides)
    if architecture == "electra":
        return transformers.ElectraConfig(**common, embedding_size=32, **overrides)
    if architecture == "mobilebert":
        return transformers.MobileBertConfig(**{**common, "intermediate_size": 64}, embedding_size=32,
                                             true_hidden_size=32, intra_bottleneck_size=32,
                                             num_feedforward_networks=2, **overrides)
    if architecture == "deberta-v2":
        # DeBERTa-v3 settings: relative positions only, shared keys, both disentangled terms.
        return transformers.DebertaV2Config(**common, relative_attention=True, position_buckets=64,
                                            pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                            share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0,
                                            **overrides)
    if architecture == "modernbert":
        settings = dict(local_attention=TINY_MODERNBERT_LOCAL_ATTENTION, bos_token_id=tokenizer.cls_token_id,
                        eos_token_id=tokenizer.sep_token_id, cls_token_id=tokenizer.cls_token_id,
                        sep_token_id=tokenizer.sep_token_id)
        return transformers.ModernBertConfig(**common, **{**settings, **overrides})
    return transformers.BertConfig(**common, **overrides)


def build_tiny_qa_checkpoint(folder: Path, architecture: str = "distilbert", seed: int = 0, **config) -> Path:
    """Save a randomly initialised tiny *ForQuestionAnswering with a tokenizer of the architecture's kind."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(folder, architecture)
    model = AutoModelForQuestionAnswering.from_config(tiny_config(architecture, tokenizer, **config))
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


TINY_LABELS = ("business", "entertainment", "politics", "sport", "tech")


def build_tiny_classifier_checkpoint(folder: Path, architecture: str = "distilbert", seed: int = 0,
                                     labels=TINY_LABELS, head_scale: float = 1.0) -> Path:
    """Save a randomly initialised tiny *ForSequenceClassification with named labels. `head_scale` multiplies the
    classifier's last layer: large values make the random model confident, so the choice rule reaches a verdict."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(folder, architecture)
    config = tiny_config(architecture, tokenizer, num_labels=len(labels), id2label=dict(enumerate(labels)),
                         label2id={label: i for i, label in enumerate(labels)})
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(head_scale)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def shared_tiny_checkpoint(tmp_path_factory, architecture: str) -> Path:
    """The run's one tiny checkpoint of `architecture` (built once, shared by every file and worker: never write in it)."""
    return build_once(tmp_path_factory, f"tiny-{architecture}-qa",
                      lambda folder: build_tiny_qa_checkpoint(folder, architecture))


@pytest.fixture(scope="session")
def tiny_distilbert_classifier(tmp_path_factory) -> Path:
    """A tiny DistilBERT topic classifier (five BBC labels, random weights), shared by the run: never write in it."""
    return build_once(tmp_path_factory, "tiny-distilbert-classifier",
                      lambda folder: build_tiny_classifier_checkpoint(folder, "distilbert"))


@pytest.fixture(scope="session")
def tiny_distilbert_qa(tmp_path_factory) -> Path:
    return shared_tiny_checkpoint(tmp_path_factory, "distilbert")


@pytest.fixture(scope="session")
def tiny_bert_qa(tmp_path_factory) -> Path:
    return shared_tiny_checkpoint(tmp_path_factory, "bert")


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """architecture -> a tiny QA checkpoint folder, built on first use."""
    def get(architecture: str) -> Path:
        return shared_tiny_checkpoint(tmp_path_factory, architecture)

    return get


# A user's own calibration questions: not the validation pairs (export/task.py), since calibrating on them would flatter
# the comparison.
OWN_CALIBRATION = {"version": "1.1", "data": [{"title": "harbour", "paragraphs": [
    {"context": "The harbour authority opened a second container terminal in May, doubling the port's capacity to "
                "two million containers a year. Its director, Ana Ruiz, said traffic from Asia had grown fastest.",
     "qas": [{"id": "h1", "question": "Who directs the harbour authority?",
              "answers": [{"text": "Ana Ruiz", "answer_start": 120}]},
             {"id": "h2", "question": "When did the second terminal open?",
              "answers": [{"text": "May", "answer_start": 63}]},
             {"id": "h3", "question": "How many containers can the port handle a year?",
              "answers": [{"text": "two million", "answer_start": 103}]}]}]}]}


def export_with_own_calibration(checkpoint: Path, format_name: str, length: int, folder: Path,
                                precision: str = "int8-static") -> tuple[dict, Path]:
    """`pocketbert export CHECKPOINT --format F --precision P --calibration FILE` from the command line;
    returns the manifest and the calibration file."""
    from pocketbert.cli import main
    from pocketbert.manifest import read_manifest

    squad = folder / "calibration.json"
    squad.write_text(json.dumps(OWN_CALIBRATION))
    assert main(["export", str(checkpoint), "--format", format_name, "--precision", precision,
                 "--calibration", str(squad), "--seq-len", str(length), "--out", str(folder / "own")]) == 0
    return read_manifest(folder / "own"), squad


@pytest.fixture
def kill_at_step():
    """`kill_at_step(N)`: a Trainer callback standing in for kill -9 at step N: the run dies mid-way without finishing
    or saving anything more (the resume tests of QA and classification training)."""
    from transformers import TrainerCallback

    class KillAtStep(TrainerCallback):
        def __init__(self, step):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == self.step:
                raise RuntimeError("simulated kill")

    return KillAtStep
