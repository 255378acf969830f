"""The QA page (`pocketbert device web ARTIFACT`): a question typed into the page in Chromium gets the answer
`pocketbert eval` gives for the same artifact and question (predictions.json), as a slice of the original context.

The page tokenizes in JS (WordPiece from the folder's tokenizer.json, with character offsets), cuts the same windows
as pocketbert/qa.py, runs the artifact in onnxruntime-web / LiteRT.js and decodes the span the same way. Tiny
random-weight models answer something arbitrary but deterministic: equal spans are what this checks.
"""
from __future__ import annotations

import json

import pytest
from test_device_browser import require_browser_stack

SEQ = 64
LONG_CONTEXT = (
    "The Zürich office of the Bureau for Coastal Studies, led by Dr. Maria Okafor since 2019, published its "
    "\"naïve flooding\" report in March 2021. It found that sea levels near the Rhine-Meuse estuary rose by 4.2 "
    "centimetres in a decade, while the river  carried 3,900 cubic metres of water per second in winter (up from "
    "3,100). Engineers at Delft University measured the tide every hour; their chief, Pieter de Vries, said the "
    "dikes built after 1953 would need raising by 2050. The city council of Rotterdam approved 120 million euros "
    "for new pumping stations, and the work began in September 2022 under the supervision of Anna Kowalczyk.")
SQUAD = {"version": "1.1", "data": [{"title": "floods", "paragraphs": [
    {"context": LONG_CONTEXT, "qas": [
        {"id": "long1", "question": "Who leads the Zürich office?",
         "answers": [{"text": "Dr. Maria Okafor", "answer_start": 60}]},
        {"id": "long2", "question": "How much did the council approve for PUMPING stations?",
         "answers": [{"text": "120 million euros", "answer_start": 513}]},
        {"id": "long3", "question": "When did the work begin?",
         "answers": [{"text": "September 2022", "answer_start": 579}]},
    ]},
    {"context": "Despite rising fuel prices, the airline carried 4.2 million passengers last year, up from 3.9 "
                "million.",
     "qas": [{"id": "short1", "question": "How many passengers did the airline carry?",
              "answers": [{"text": "4.2 million", "answer_start": 48}]}]},
]}]}


@pytest.fixture(scope="module")
def qa_setup(tmp_path_factory, tiny_distilbert_qa, export_once):
    require_browser_stack()
    root = tmp_path_factory.mktemp("qa-page")
    squad = root / "dev.json"
    squad.write_text(json.dumps(SQUAD, ensure_ascii=False))
    folders = {}
    for fmt in ("onnx", "tflite"):
        folders[fmt] = root / fmt
        export_once(str(tiny_distilbert_qa), fmt, folders[fmt], precision="fp32", seq_lens=(SEQ,))
    return folders, squad


def eval_predictions(artifact, squad, out, max_seq_len: int | None) -> tuple[dict, dict]:
    """`pocketbert eval ARTIFACT --data dev.json --out OUT [--max-seq-len N]`: predictions.json and the eval entry."""
    from pocketbert.cli import main

    length = ["--max-seq-len", str(max_seq_len)] if max_seq_len else []
    assert main(["eval", str(artifact), "--data", str(squad), "--out", str(out), *length]) == 0
    found = list(out.glob("predictions/*/predictions.json"))
    assert len(found) == 1, found
    entry, = json.loads((out / "eval.json").read_text())["entries"]
    return json.loads(found[0].read_text()), entry


# ONNX files take any length up to 512: eval's --max-seq-len 64 (and the page's) makes the long context slide over
# several windows. The .tflite file has one fixed length (64), which both pick by themselves.
@pytest.mark.parametrize("fmt,max_seq_len", [("onnx", SEQ), ("tflite", None)])
def test_page_answers_what_pocketbert_eval_answers(qa_setup, fmt, max_seq_len, tmp_path):
    from pocketbert.mobile_harness.browser import Chromium, serve_qa_page
    from pocketbert.modeling import load_tokenizer
    from pocketbert.qa import QAWindow, load_squad, prepare_features

    folders, squad = qa_setup
    artifact = folders[fmt]
    predictions, entry = eval_predictions(artifact, squad, tmp_path / "eval", max_seq_len)
    assert entry["seq_len"] == SEQ
    examples = load_squad(squad)
    tokenizer = load_tokenizer(artifact)

    server, url = serve_qa_page(artifact, port=0, max_seq_len=max_seq_len)
    chromium = Chromium()
    try:
        page, messages = chromium.open(url, "window.pocketbertReady", 120)
        assert page.evaluate("window.pocketbertReady") == {"ok": True}, messages
        window = QAWindow(max_seq_len=SEQ).clamped()
        assert page.evaluate("window.pocketbertQA.window") == {
            "length": window.max_seq_len, "stride": window.doc_stride, "query": window.max_query_len}
        assert entry["doc_stride"] == window.doc_stride
        windows_seen = []
        for example in examples:
            # The page cuts the same windows as pocketbert/qa.py (ids, masks, context offsets).
            features = prepare_features(tokenizer, [example], window)
            page_windows = page.evaluate("([q, c]) => window.pocketbertQA.windows(q, c)",
                                         [example.question, example.context])
            assert [w["inputs"]["input_ids"] for w in page_windows] == features["input_ids"].tolist()
            assert [w["inputs"]["attention_mask"] for w in page_windows] == features["attention_mask"].tolist()
            assert [[tuple(o) if o else None for o in w["offsets"]] for w in page_windows] == features["offsets"]
            windows_seen.append(len(page_windows))

            # A person's way: type the context and the question, click, read the answer.
            page.fill("#context", example.context)
            page.fill("#question", example.question)
            page.evaluate("window.pocketbertAnswer = null")
            page.click("#ask")
            page.wait_for_function("window.pocketbertAnswer", timeout=60_000)
            shown = page.evaluate("document.getElementById('answer').textContent")
            answer = page.evaluate("window.pocketbertAnswer")
            assert "error" not in answer, answer
            assert answer["text"] == predictions[example.id], (example.id, answer, predictions[example.id])
            assert shown == (answer["text"] or "(no answer)")
            # A slice of the context as typed: case, accents and spacing kept.
            assert example.context[answer["start"]:answer["end"]] == answer["text"]
            assert 0 < answer["probability"] <= 1 and answer["latency_ms"] > 0
            assert float(page.evaluate("document.getElementById('latency').textContent")) > 0
        assert max(windows_seen) > 1, "the long context must slide over several windows"
    finally:
        chromium.close()
        server.close()


def test_page_refuses_what_it_cannot_run(tmp_path):
    from pocketbert.errors import PocketbertError
    from pocketbert.mobile_harness.browser import serve_qa_page

    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(PocketbertError):
        serve_qa_page(tmp_path)
