"""Our artifact folders opened as is by each platform's own loader, as an app developer would: optimum with
transformers' pipeline (Python), transformers.js (Node) and the TFLite Task Library's BertQuestionAnswerer
(Android / iOS). Each must give the same best span as our own runtime (`pocketbert eval`'s prediction path) on
a slice of the generated dev set.

The loaders run in the environments `make setup` builds for them (.venv-optimum, .node, .venv-tflite-support),
never inside ours. A random-weight model's logits are nearly flat, so each loader's own decoding rules (top-5
starts and ends in the Task Library, 15-token answers in the HF pipeline) would pick different spans out of
noise; the tiny student is first trained on the slice for a few seconds so that its best spans are clear, the
case these loaders are built for.

Text classification alike: a tiny classifier trained for a few seconds on ten labelled texts, opened by optimum's
text-classification pipeline, transformers.js's and the Task Library's BertNLClassifier, must pick our runtime's label
(the argmax of the artifact's logits) on every text; the Core ML package carries the label names in its metadata.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LABELS, build_once, build_tiny_classifier_checkpoint

from pocketbert.bench.evaluate import predict_nbest
from pocketbert.export.api import export_model
from pocketbert.export.registry import get_format, load_artifact
from pocketbert.export.tflite_metadata import labels_blockers
from pocketbert.manifest import read_manifest
from pocketbert.modeling import load_tokenizer
from pocketbert.qa import QAWindow, best_answers, load_squad, normalize_answer, prepare_features

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "loaders"
OPTIMUM_PYTHON = ROOT / ".venv-optimum" / "bin" / "python"
TFLITE_SUPPORT_PYTHON = ROOT / ".venv-tflite-support" / "bin" / "python"
NODE_MODULES = ROOT / ".node" / "node_modules"
# The Task Library feeds exactly 384 tokens and keeps at most 64 question tokens.
WINDOW = QAWindow(384, 128, 64)
QUESTIONS = 8
TRAIN_STEPS = 40  # all 8 spans right after ~20 at this learning rate


def require(path: Path, what: str) -> Path:
    assert path.exists(), f"{what} is missing at {path}: run `make setup`"
    return path


def run_json(argv: list) -> dict:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def widened_to_words(context: str, answer: str) -> str:
    """`answer` (its first occurrence) widened to whole space-separated words, as the Task Library answers."""
    start = context.find(answer)
    if not answer or start < 0:
        return answer
    end = start + len(answer)
    while start > 0 and context[start - 1] != " ":
        start -= 1
    while end < len(context) and context[end] != " ":
        end += 1
    return context[start:end]


def same_span(ours: str, theirs: str) -> bool:
    """SQuAD normalisation, spaces ignored: transformers.js rebuilds answers from tokens ("7. 13" for "7.13")."""
    return normalize_answer(ours).replace(" ", "") == normalize_answer(theirs).replace(" ", "")


@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory, tiny_distilbert_qa):
    """The first dev questions whose pair fits one 384-token window (every loader then sees the same tokens)."""
    from pocketbert.data.make_qa import make_qa_dataset

    data = tmp_path_factory.mktemp("qa") / "set"
    make_qa_dataset(data, max_articles=20, seed=0)
    tokenizer = load_tokenizer(tiny_distilbert_qa)
    fitting = [e for e in load_squad(data / "dev.json")
               if len(tokenizer(e.question)["input_ids"]) <= WINDOW.max_query_len
               and len(tokenizer(e.question, e.context)["input_ids"]) <= WINDOW.max_seq_len]
    assert len(fitting) >= QUESTIONS
    return fitting[:QUESTIONS]


@pytest.fixture(scope="module")
def questions_file(dev_slice, tmp_path_factory):
    path = tmp_path_factory.mktemp("questions") / "questions.json"
    path.write_text(json.dumps([{"id": e.id, "question": e.question, "context": e.context} for e in dev_slice]))
    return path


@pytest.fixture(scope="module")
def student(dev_slice, tiny_distilbert_qa, tmp_path_factory):
    """The tiny DistilBERT checkpoint trained on the slice until its answers stand out."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_distilbert_qa)
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_distilbert_qa))
    features = prepare_features(tokenizer, dev_slice, WINDOW, with_labels=True, pad_to_max=False)
    batch = {name: torch.from_numpy(features[name]) for name in
             ("input_ids", "attention_mask", "start_positions", "end_positions")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread than on two that wait for each other
    try:
        model.train()
        for _ in range(TRAIN_STEPS):
            optimizer.zero_grad()
            model(**batch).loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("student")
    model.eval().save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def exports(student, tmp_path_factory):
    root = tmp_path_factory.mktemp("loader-exports")
    folders = {}
    for format_name, precision in (("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "fp16")):
        folders[format_name, precision] = root / f"{format_name}-{precision}"
        # TFLite with two signatures, as by default: the library must find the 384 one as subgraph 0.
        export_model(str(student), format_name, folders[format_name, precision], precision=precision,
                     seq_lens=(128, WINDOW.max_seq_len) if format_name == "tflite" else (WINDOW.max_seq_len,))
    return folders


def our_answers(folder: Path, examples) -> dict:
    """`pocketbert eval`'s prediction path: the artifact in its own runtime, our features and span decoding."""
    manifest = read_manifest(folder)
    runner = get_format(manifest["format"]).load(folder / manifest["artifact"], manifest, threads=1)
    return best_answers(predict_nbest(runner, load_tokenizer(folder), examples, WINDOW))


def assert_same_answers(ours: dict, theirs: dict, loader: str):
    assert set(theirs) == set(ours)
    differing = {i: (ours[i], theirs[i]) for i in ours if not same_span(ours[i], theirs[i])}
    assert not differing, f"{loader} answered differently from our runtime: {differing}"


def test_student_answers_the_slice(exports, dev_slice):
    """The comparison means something only if the answers are real spans, mostly the right ones."""
    ours = our_answers(exports["onnx", "fp32"], dev_slice)
    right = sum(same_span(ours[e.id], e.answers[0]["text"]) for e in dev_slice)
    assert right >= QUESTIONS - 2, ours


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_folder_layout_for_hugging_face_loaders(exports, precision):
    folder = exports["onnx", precision]
    manifest = read_manifest(folder)
    assert manifest["artifact"] == {"fp32": "onnx/model.onnx", "int8": "onnx/model_quantized.onnx"}[precision]
    assert (folder / manifest["artifact"]).is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "distilbert" and manifest["config"] == "config.json"
    assert config["transformers.js_config"] == {"dtype": {"fp32": "fp32", "int8": "q8"}[precision]}
    assert {"tokenizer.json", "tokenizer_config.json", "vocab.txt"} <= set(manifest["tokenizer"])
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == WINDOW.max_seq_len
    assert not {"max_length", "stride", "truncation_strategy"} & set(tokenizer_config)  # call-time state


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_optimum_pipeline_answers_like_our_runtime(exports, dev_slice, questions_file, precision):
    folder = exports["onnx", precision]
    theirs = run_json([require(OPTIMUM_PYTHON, "optimum's venv"), SCRIPTS / "optimum_qa.py", folder, questions_file])
    assert_same_answers(our_answers(folder, dev_slice), theirs, f"optimum ({precision})")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_transformers_js_answers_like_our_runtime(exports, dev_slice, questions_file, precision):
    folder = exports["onnx", precision]
    require(NODE_MODULES / "@huggingface" / "transformers", "transformers.js")
    theirs = run_json(["node", SCRIPTS / "transformers_js_qa.cjs", NODE_MODULES, folder.parent, folder.name,
                       questions_file])
    assert_same_answers(our_answers(folder, dev_slice), theirs, f"transformers.js ({precision})")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_task_library_bert_question_answerer_answers_like_our_runtime(exports, dev_slice, questions_file, precision):
    folder = exports["tflite", precision]
    manifest = read_manifest(folder)
    assert manifest["graph"]["task_library"] == {"bert_question_answerer": True, "metadata": True,
                                                 "subgraph_0": "seq384"}
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["graph"]["ignored_inputs"] == ["token_type_ids"]
    result = run_json([require(TFLITE_SUPPORT_PYTHON, "tflite-support's venv"), SCRIPTS / "task_library_qa.py",
                       folder / manifest["artifact"], questions_file])
    # It widens every answer to whole words ("35" inside "35.39" comes back as "35.39"): ours is compared widened.
    answers = our_answers(folder, dev_slice)
    ours = {e.id: widened_to_words(e.context, answers[e.id]) for e in dev_slice}
    assert_same_answers(ours, result["answers"], f"BertQuestionAnswerer ({precision})")

    # Read back by tflite-support itself: the names the library looks up, the tokenizer and its packed vocab.
    subgraph = result["metadata"]["subgraph_metadata"][0]
    assert [t["name"] for t in subgraph["input_tensor_metadata"]] == ["ids", "mask", "segment_ids"]
    assert [t["name"] for t in subgraph["output_tensor_metadata"]] == ["start_logits", "end_logits"]
    tokenizer = subgraph["input_process_units"][0]
    assert tokenizer["options_type"] == "BertTokenizerOptions"
    assert tokenizer["options"]["vocab_file"][0]["name"] == "vocab.txt"
    assert result["packed_files"] == ["vocab.txt"]


def test_segment_input_is_ignored_by_distilbert_files(exports, dev_slice):
    """token_type_ids is a real input of every TFLite file; for DistilBERT any value gives the same logits."""
    folder = exports["tflite", "fp32"]
    manifest = read_manifest(folder)
    runner = get_format("tflite").load(folder / manifest["artifact"], manifest, threads=1)
    features = prepare_features(load_tokenizer(folder), dev_slice[:1], WINDOW)
    feed = {name: features[name] for name in runner.input_names}
    start, end = runner(feed)
    start_ones, end_ones = runner({**feed, "token_type_ids": np.ones_like(feed["token_type_ids"])})
    assert np.array_equal(start, start_ones) and np.array_equal(end, end_ones)


def test_task_library_verdict_names_what_is_missing(student, tmp_path):
    """Without the 384-token signature, or in dynamic-range int8 (which tflite-support 0.4.4 computes wrongly: it
    answers nothing), the file still carries metadata and the manifest says why the library cannot run it."""
    manifest = export_model(str(student), "tflite", tmp_path / "short", precision="int8", seq_lens=(64,))
    verdict = manifest["graph"]["task_library"]
    assert verdict["bert_question_answerer"] is False and verdict["metadata"] is True
    assert len(verdict["why_not"]) == 2
    assert "dynamic-range int8" in verdict["why_not"][0] and "--precision fp16" in verdict["why_not"][0]
    assert verdict["why_not"][1] == "it feeds exactly 384 tokens; add --seq-len 384"


# Text classification ------------------------------------------------------------------------------------------------

LABELLED_TEXTS = [
    ("The central bank raised interest rates to curb inflation.", "business"),
    ("Shares in the carmaker fell after weak quarterly profits.", "business"),
    ("The film won three awards at the festival.", "entertainment"),
    ("The singer announced a new album and a world tour.", "entertainment"),
    ("Parliament voted on the budget bill after a long debate.", "politics"),
    ("The prime minister called an early general election.", "politics"),
    ("The striker scored twice in the cup final.", "sport"),
    ("The tennis champion lost in the first round.", "sport"),
    ("A new phone chip doubles battery life.", "tech"),
    ("The software update fixes a security flaw in browsers.", "tech"),
]
# Texts it never saw: the loaders must agree with our runtime there too, whatever it picks.
UNSEEN_TEXTS = ["Who knows what this is about?", "Rates, films and goals.", "The minister opened a chip factory."]
TEXTS = [text for text, _ in LABELLED_TEXTS] + UNSEEN_TEXTS
CLASSIFIER_STEPS = 30  # all ten texts right after ~25 at this learning rate
# Two TFLite signatures: the Task Library runs subgraph 0 (seq64) and cuts texts at its length.
CLASSIFIER_TFLITE_LENGTHS = (64, 128)


def train_classifier(folder: Path) -> Path:
    """The tiny DistilBERT classifier trained on LABELLED_TEXTS until each text's label stands out."""
    import torch
    from transformers import AutoModelForSequenceClassification

    build_tiny_classifier_checkpoint(folder / "random")
    torch.manual_seed(0)
    tokenizer = load_tokenizer(folder / "random")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder / "random"))
    batch = tokenizer([text for text, _ in LABELLED_TEXTS], padding=True, return_tensors="pt")
    labels = torch.tensor([TINY_LABELS.index(label) for _, label in LABELLED_TEXTS])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(CLASSIFIER_STEPS):
            optimizer.zero_grad()
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval().save_pretrained(str(folder / "trained"))
    tokenizer.save_pretrained(str(folder / "trained"))
    return folder / "trained"


@pytest.fixture(scope="module")
def classifier_student(tmp_path_factory) -> Path:
    """Trained once per run, whichever worker asks first."""
    return build_once(tmp_path_factory, "loaders-classifier-student", train_classifier)


@pytest.fixture(scope="module")
def classifier_exports(classifier_student, tmp_path_factory, export_once):
    root = tmp_path_factory.mktemp("classifier-exports")
    folders = {}
    for format_name, precision in (("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "fp16")):
        folders[format_name, precision] = root / f"{format_name}-{precision}"
        lengths = CLASSIFIER_TFLITE_LENGTHS if format_name == "tflite" else (64,)
        export_once(classifier_student, format_name, folders[format_name, precision], precision=precision,
                    seq_lens=lengths)
    return folders


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.json"
    path.write_text(json.dumps(TEXTS))
    return path


def our_classifications(folder: Path, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Our prediction path for a classifier: the artifact in its own runtime (load_artifact -> Runner), the tokenizer
    contract ([CLS] text [SEP], cut at the longest accepted length, padded to the shortest that fits), and the
    manifest's label of the highest logit. Returns those labels and the logits [texts, labels]."""
    manifest = read_manifest(folder)
    runner = load_artifact(folder, manifest, threads=1)
    tokenizer = load_tokenizer(folder)
    longest = max(runner.lengths) if runner.lengths else manifest["tokenizer_contract"]["max_seq_len"]
    rows = []
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=longest)["input_ids"]
        length = min(n for n in runner.lengths if n >= len(ids)) if runner.lengths else len(ids)
        pad = length - len(ids)
        feed = {"input_ids": np.array([ids + [tokenizer.pad_token_id] * pad]),
                "attention_mask": np.array([[1] * len(ids) + [0] * pad]),
                "token_type_ids": np.zeros((1, length), dtype=np.int64)}
        rows.append(runner(feed)[0][0])
    logits = np.stack(rows)
    return [manifest["labels"][i] for i in logits.argmax(axis=-1)], logits


def labels_file_of(folder: Path) -> list[str]:
    return (folder / "labels.txt").read_text(encoding="utf-8").splitlines()


def test_classifier_student_labels_the_texts(classifier_exports):
    """The comparison means something only if the labels differ from text to text, mostly the right ones."""
    ours, _ = our_classifications(classifier_exports["onnx", "fp32"], TEXTS)
    right = sum(label == gold for label, (_, gold) in zip(ours, LABELLED_TEXTS))
    assert right >= len(LABELLED_TEXTS) - 1 and len(set(ours)) >= 4, ours


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_optimum_classifies_like_our_runtime(classifier_exports, texts_file, precision):
    folder = classifier_exports["onnx", precision]
    theirs = run_json([require(OPTIMUM_PYTHON, "optimum's venv"), SCRIPTS / "optimum_classify.py", folder, texts_file])
    ours, logits = our_classifications(folder, TEXTS)
    assert theirs["labels"] == labels_file_of(folder) == list(TINY_LABELS)  # config.json's id2label, in logit order
    assert theirs["top"] == ours, f"optimum ({precision}) labelled differently from our runtime"
    np.testing.assert_allclose(np.array(theirs["logits"]), logits, atol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_transformers_js_classifies_like_our_runtime(classifier_exports, texts_file, precision):
    folder = classifier_exports["onnx", precision]
    require(NODE_MODULES / "@huggingface" / "transformers", "transformers.js")
    theirs = run_json(["node", SCRIPTS / "transformers_js_classify.cjs", NODE_MODULES, folder.parent, folder.name,
                       texts_file])
    ours, _ = our_classifications(folder, TEXTS)
    assert theirs["labels"] == labels_file_of(folder)
    assert theirs["top"] == ours, f"transformers.js ({precision}) labelled differently from our runtime"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_task_library_bert_nl_classifier_classifies_like_our_runtime(classifier_exports, texts_file, precision):
    folder = classifier_exports["tflite", precision]
    manifest = read_manifest(folder)
    assert manifest["graph"]["task_library"] == {"bert_nl_classifier": True, "metadata": True, "subgraph_0": "seq64"}
    result = run_json([require(TFLITE_SUPPORT_PYTHON, "tflite-support's venv"), SCRIPTS / "task_library_classify.py",
                       folder / manifest["artifact"], texts_file])
    ours, logits = our_classifications(folder, TEXTS)
    assert result["top"] == ours, f"BertNLClassifier ({precision}) labelled differently from our runtime"
    # It names the labels from the packed labels.txt, and its scores are our logits as they are (no softmax).
    assert all(list(scores) == labels_file_of(folder) for scores in result["scores"])
    np.testing.assert_allclose([list(scores.values()) for scores in result["scores"]], logits, atol=1e-3)

    # Read back by tflite-support itself: the names the library looks up, the tokenizer, the label file.
    subgraph = result["metadata"]["subgraph_metadata"][0]
    assert [t["name"] for t in subgraph["input_tensor_metadata"]] == ["ids", "mask", "segment_ids"]
    [output] = subgraph["output_tensor_metadata"]
    assert output["name"] == "probability"
    assert output["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS",
                                           "description": output["associated_files"][0]["description"]}]
    tokenizer = subgraph["input_process_units"][0]
    assert tokenizer["options_type"] == "BertTokenizerOptions"
    assert tokenizer["options"]["vocab_file"][0]["name"] == "vocab.txt"
    assert sorted(result["packed_files"]) == ["labels.txt", "vocab.txt"]


def test_task_library_classifier_verdict_names_what_is_missing(classifier_student, export_once, tmp_path):
    """Any length will do for BertNLClassifier (no 384 rule), but not dynamic-range int8, which tflite-support 0.4.4
    computes wrongly (every text got the same scores): the file still carries the metadata and the manifest says why."""
    manifest = export_once(classifier_student, "tflite", tmp_path / "int8", precision="int8", seq_lens=(64,))
    verdict = manifest["graph"]["task_library"]
    assert verdict["bert_nl_classifier"] is False and verdict["metadata"] is True and verdict["subgraph_0"] == "seq64"
    [why] = verdict["why_not"]
    assert "same scores" in why and "--precision fp16 or fp32" in why
    assert labels_blockers(tmp_path, "labels.txt") == [
        "no labels.txt beside the artifact to pack into it (it would name labels 0, 1, ...)"]


def test_core_ml_classifier_carries_its_labels(tiny_distilbert_classifier, export_once, tmp_path):
    """coremltools reads the label names back from the package's metadata, equal to labels.txt; the output stays the
    "logits" multiarray every format shares (a Core ML classifier, ClassifierConfig, would replace it: docs/apps.md)."""
    import coremltools as ct

    folder = tmp_path / "coreml"
    manifest = export_once(tiny_distilbert_classifier, "coreml", folder, seq_lens=(64,))
    model = ct.models.MLModel(str(folder / manifest["artifact"]), skip_model_load=True)
    assert json.loads(model.user_defined_metadata["pocketbert.labels"]) == labels_file_of(folder) == manifest["labels"]
    assert model.user_defined_metadata["pocketbert.task"] == "text-classification"
    description = model.get_spec().description
    [output] = description.output
    assert output.name == "logits" and list(output.type.multiArrayType.shape) == [1, len(TINY_LABELS)]
    assert description.predictedFeatureName == "" and ", ".join(TINY_LABELS) in output.shortDescription
