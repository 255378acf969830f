"""TFLite Model Metadata written with our own flatbuffer code: what the TFLite Task Library's BertQuestionAnswerer
(extractive QA) and BertNLClassifier (text classification) read to run a .tflite file without any code of ours.

Both find their tensors by metadata names of subgraph 0: inputs "ids", "mask", "segment_ids"; outputs
"start_logits", "end_logits" (BertQuestionAnswerer) or the one output "probability" (BertNLClassifier). Both build
their WordPiece tokenizer from the BertTokenizer process unit, lower-case every text, and read the files the metadata
names from a zip archive appended to the model file ("packed associated files"): the unit's vocab file, and for
BertNLClassifier the output's first associated file of type TENSOR_AXIS_LABELS (labels.txt) for the label names.
BertNLClassifier reports the output's values as they are, as each label's score (tflite-support's NLClassifier
BuildResults: no softmax), so our logits work unchanged: its scores are logits, not probabilities, and its best
label is our argmax. It feeds [CLS] text [SEP] padded with 0 to subgraph 0's length, segment ids all 0.
tflite-support's own metadata writer does the same, but it pins protobuf 3 and an old runtime, so it is not a
dependency; the fields below follow its schema (tensorflow_lite_support/metadata/metadata_schema.fbs), and the
loader tests read the result back with tflite-support itself.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np

from pocketbert.errors import require_module

METADATA_BUFFER_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
MODEL_FILE_IDENTIFIER = b"TFL3"
# The oldest metadata parser that understands a BertTokenizer process unit (what tflite-support computes for it).
MIN_PARSER_VERSION = "1.1.0"
# The only sequence length BertQuestionAnswerer feeds (its kMaxSeqLen); it also lower-cases every text.
TASK_LIBRARY_SEQ_LEN = 384
# Precisions whose files the library's runtime (tflite-support 0.4.4) cannot run, measured on the demo's student:
# int8 and int8-static files load but every answer list comes back empty, while fp32, fp16 and weight-only int8
# (explicit DEQUANTIZE ops, float compute) files answer; 4-bit weights and int16 activations stop it from building the
# model at all.
TASK_LIBRARY_REFUSED_PRECISIONS = {
    "int8": "its runtime computes dynamic-range int8 (hybrid FULLY_CONNECTED) wrongly and answers nothing",
    "int8-static": "its runtime answers nothing with full-integer int8 files (every answer list empty)",
    "a16w8": "its runtime has no int16 RSQRT (the LayerNorm's) and cannot build the model",
    "int4": "its runtime cannot build a model with 4-bit weights",
}
# The same runtime under BertNLClassifier: a tiny trained classifier's int8 file gave every text the same scores
# (0.111, -0.030, 0.052, ...) where our runtime gives each text its own logits (labels 10/10 right), while its fp32 and
# fp16 files gave our logits to 1e-3. int8-static is refused on the QA evidence (not measured with a classifier).
NL_CLASSIFIER_REFUSED_PRECISIONS = {
    "int8": "its runtime computes dynamic-range int8 (hybrid FULLY_CONNECTED) wrongly: every text gets the same scores",
    "int8-static": "its runtime computes full-integer int8 files wrongly (QA files answer nothing with it)",
    "a16w8": TASK_LIBRARY_REFUSED_PRECISIONS["a16w8"],
    "int4": TASK_LIBRARY_REFUSED_PRECISIONS["int4"],
}
# Our tensor names -> the names BertQuestionAnswerer and BertNLClassifier look up in the metadata.
TASK_LIBRARY_NAMES = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "segment_ids",
                      "start_logits": "start_logits", "end_logits": "end_logits", "logits": "probability"}
DESCRIPTIONS = {
    "ids": "Token ids of [CLS] question [SEP] context [SEP], WordPiece, padded with 0.",
    "mask": "1 for real tokens, 0 for padding.",
    "segment_ids": "0 for the question and its [CLS]/[SEP], 1 for the context and the last [SEP].",
    "start_logits": "Score of each position being the first token of the answer.",
    "end_logits": "Score of each position being the last token of the answer.",
}
CLASSIFIER_DESCRIPTIONS = {
    "ids": "Token ids of [CLS] text [SEP], WordPiece, padded with 0.",
    "mask": "1 for real tokens, 0 for padding.",
    "segment_ids": "0 everywhere: one text.",
    "probability": "Logits of the labels (no softmax), in labels.txt order: the label is the one with the highest.",
}
VOCAB_DESCRIPTION = "WordPiece vocabulary of the tokenizer, one token per line (line number = token id)."
LABELS_DESCRIPTION = "Label names, one per line, in the order of the output's values (line number = label index)."

# Slot numbers and enum values from metadata_schema.fbs (field order is the binary layout).
ASSOCIATED_FILE_TENSOR_AXIS_LABELS = 2
ASSOCIATED_FILE_VOCABULARY = 5
CONTENT_FEATURE_PROPERTIES = 1
PROCESS_UNIT_BERT_TOKENIZER = 4


def metadata_blockers(folder: Path) -> list[str]:
    """Why no BertTokenizer metadata can describe this export's tokenizer (empty: it can)."""
    tokenizer = _read_json(folder / "tokenizer.json")
    model_type = (tokenizer.get("model") or {}).get("type")
    if model_type != "WordPiece":
        return [f"it tokenises with WordPiece, this model's tokenizer is {model_type or 'unknown'}"]
    if not (folder / "vocab.txt").is_file():
        return ["no vocab.txt beside the artifact to pack into it"]
    return []


def labels_blockers(folder: Path, labels_file: str | None) -> list[str]:
    """Why no label file can be packed for BertNLClassifier's label names (empty: it can)."""
    if not labels_file or not (folder / labels_file).is_file():
        return [f"no {labels_file or 'labels file'} beside the artifact to pack into it (it would name labels 0, 1, ...)"]
    return []


def runtime_blockers(folder: Path, precision: str, seq_lens: tuple[int, ...], op_versions: dict[str, int],
                     question_answering: bool = True) -> list[str]:
    """Why BertQuestionAnswerer (or, `question_answering` False, BertNLClassifier) would not run a file with correct
    metadata (empty: it would). BertNLClassifier takes any length: it pads to, and cuts at, subgraph 0's."""
    refused = TASK_LIBRARY_REFUSED_PRECISIONS if question_answering else NL_CLASSIFIER_REFUSED_PRECISIONS
    blockers = []
    if precision in refused:
        blockers.append(f"{refused[precision]}; export --precision fp16 or fp32 for it")
    if question_answering and TASK_LIBRARY_SEQ_LEN not in seq_lens:
        blockers.append(f"it feeds exactly {TASK_LIBRARY_SEQ_LEN} tokens; add --seq-len {TASK_LIBRARY_SEQ_LEN}")
    if not ((_read_json(folder / "tokenizer.json").get("normalizer") or {}).get("lowercase", False)):
        blockers.append("it lower-cases all text, this tokenizer is cased")
    if op_versions.get("GATHER_ND", 0) >= 5:
        blockers.append("its TFLite runtime refuses GATHER_ND version 5")
    return blockers


def add_qa_metadata(model: bytes, input_names: list[str], output_names: list[str], vocab: Path,
                    description: str) -> bytes:
    """`model` with BertQuestionAnswerer metadata for subgraph 0 and `vocab` packed in.

    `input_names` / `output_names`: our names of subgraph 0's input / output tensors, in the subgraph's order.
    """
    metadata = _metadata(("pocketbert extractive question answering", "question answering"), DESCRIPTIONS,
                         input_names, output_names, vocab.name, None, description)
    return _with_metadata(model, metadata, [vocab])


def add_classifier_metadata(model: bytes, input_names: list[str], output_names: list[str], vocab: Path, labels: Path,
                            description: str) -> bytes:
    """`model` with BertNLClassifier metadata for subgraph 0, `vocab` and `labels` (one name a line, in logit order)
    packed in; the output's label file is its TENSOR_AXIS_LABELS associated file.

    `input_names` / `output_names`: our names of subgraph 0's input / output tensors, in the subgraph's order.
    """
    metadata = _metadata(("pocketbert text classification", "text classification"), CLASSIFIER_DESCRIPTIONS,
                         input_names, output_names, vocab.name, labels.name, description)
    return _with_metadata(model, metadata, [vocab, labels])


def _with_metadata(model: bytes, metadata: bytes, files: list[Path]) -> bytes:
    """`model` with `metadata` as its TFLITE_METADATA buffer and `files` packed into a zip appended to it."""
    schema = require_module("ai_edge_litert.schema_py_generated", "ai-edge-litert")
    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    for stored in flat.buffers:
        if stored.offset > 1:
            # Data stored after the flatbuffer (ai-edge-quantizer writes int8 weights so) moves inline: repacking
            # changes the flatbuffer's size, so the old file offsets would point at the wrong bytes.
            stored.data = np.frombuffer(model, dtype=np.uint8, count=stored.size, offset=stored.offset)
            stored.offset, stored.size = 0, 0
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    flat.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(flat.buffers) - 1
    flat.metadata = [m for m in (flat.metadata or []) if m.name.decode() != METADATA_BUFFER_NAME] + [entry]
    builder = flatbuffers.Builder(len(model) + len(metadata) + 1024)
    builder.Finish(flat.Pack(builder), MODEL_FILE_IDENTIFIER)
    packed = io.BytesIO(bytes(builder.Output()))
    packed.seek(0, io.SEEK_END)
    # Appending a zip keeps the flatbuffer intact at offset 0: runtimes read the model, the library the vocab.
    with zipfile.ZipFile(packed, "a") as archive:
        for file in files:
            archive.write(file, file.name)
    return packed.getvalue()


def _metadata(names: tuple[str, str], descriptions: dict[str, str], input_names: list[str], output_names: list[str],
              vocab_name: str, labels_name: str | None, description: str) -> bytes:
    """The ModelMetadata flatbuffer: `names` (model, subgraph), one TensorMetadata per tensor named as the library
    looks it up, the BertTokenizer process unit, and `labels_name` (if any) as every output's label file."""
    b = flatbuffers.Builder(1024)
    string = b.CreateString

    def table(slots: dict[int, tuple[str, int]], n_slots: int) -> int:
        b.StartObject(n_slots)
        for slot, (kind, value) in slots.items():
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    def tensor(our_name: str, label_file: int | None = None) -> int:
        name = TASK_LIBRARY_NAMES[our_name]
        name_offset, description_offset = string(name), string(descriptions[name])
        files = None if label_file is None else vector([label_file])
        features = table({}, 0)
        content = table({0: ("uint8", CONTENT_FEATURE_PROPERTIES), 1: ("offset", features)}, 3)
        slots = {0: ("offset", name_offset), 1: ("offset", description_offset), 3: ("offset", content)}
        if files is not None:
            slots[6] = ("offset", files)
        return table(slots, 7)

    def label_file() -> int | None:
        if labels_name is None:
            return None
        return table({0: ("offset", string(labels_name)), 1: ("offset", string(LABELS_DESCRIPTION)),
                      2: ("uint8", ASSOCIATED_FILE_TENSOR_AXIS_LABELS)}, 5)

    inputs = vector([tensor(n) for n in input_names])
    outputs = vector([tensor(n, label_file()) for n in output_names])
    vocab_file = table({0: ("offset", string(vocab_name)), 1: ("offset", string(VOCAB_DESCRIPTION)),
                        2: ("uint8", ASSOCIATED_FILE_VOCABULARY)}, 5)
    tokenizer_options = table({0: ("offset", vector([vocab_file]))}, 1)
    tokenizer = table({0: ("uint8", PROCESS_UNIT_BERT_TOKENIZER), 1: ("offset", tokenizer_options)}, 2)
    subgraph = table({0: ("offset", string(names[1])), 2: ("offset", inputs), 3: ("offset", outputs),
                      5: ("offset", vector([tokenizer]))}, 10)
    root = table({0: ("offset", string(names[0])),
                  1: ("offset", string(description)), 3: ("offset", vector([subgraph])),
                  7: ("offset", string(MIN_PARSER_VERSION))}, 8)
    b.Finish(root, METADATA_FILE_IDENTIFIER)
    return bytes(b.Output())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
