"""Our artifact folders opened as is by each platform's own loader, as an app developer would: optimum with
transformers' pipeline (Python), transformers.js (Node) and the TFLite Task Library's BertQuestionAnswerer
(Android / iOS). Each must give the same best span as our own runtime (`pocketbert eval`'s prediction path) on
a slice of the generated dev set.

The loaders run in the environments `make setup` builds for them (.venv-optimum, .node, .venv-tflite-support),
never inside ours. A random-weight model's logits are nearly flat, so each loader's own decoding rules (top-5
starts and ends in the Task Library, 15-token answers in the HF pipeline) would pick different spans out of
noise; the tiny student is first trained on the slice for a few seconds so that its best spans are clear, the
case these loaders are built for.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pocketbert.bench.evaluate import predict_nbest
from pocketbert.export.api import export_model
from pocketbert.export.registry import get_format
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
