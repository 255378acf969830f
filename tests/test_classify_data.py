"""Classification data: the BBC topic split is seeded and split by article; user files in JSONL, CSV, TSV and
GLUE's SST-2 layout are read alike; every bad file is one line naming the problem, and nothing is written."""
from __future__ import annotations

import json

import pytest

from pocketbert.cli import main
from pocketbert.data.labelled_text import load_classify_data, read_labelled_file, sorted_labels
from pocketbert.errors import PocketbertError


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    root = tmp_path_factory.mktemp("topics")
    assert main(["data", "make-topics", "--out", str(root / "a"), "--max-articles", "80", "--seed", "3"]) == 0
    assert main(["data", "make-topics", "--out", str(root / "b"), "--max-articles", "80", "--seed", "3"]) == 0
    assert main(["data", "make-topics", "--out", str(root / "c"), "--max-articles", "80", "--seed", "4",
                 "--dev-share", "0.25"]) == 0
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_topic_split_is_seeded_and_by_article(topics):
    a, b, c = topics / "a", topics / "b", topics / "c"
    for name in ("train.jsonl", "dev.jsonl", "labels.txt", "data.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name  # same seed, same bytes
    assert (a / "dev.jsonl").read_bytes() != (c / "dev.jsonl").read_bytes()
    train, dev = _rows(a / "train.jsonl"), _rows(a / "dev.jsonl")
    assert len(train) + len(dev) == 80 and {row["id"] for row in train}.isdisjoint(row["id"] for row in dev)
    assert all(set(row) == {"text", "label", "id"} and row["id"].split("/")[1] == row["label"] for row in train + dev)
    labels = (a / "labels.txt").read_text().split()
    assert labels == sorted(labels) == ["business", "entertainment", "politics", "sports", "tech"]
    assert {row["label"] for row in dev} == set(labels)  # stratified: every topic is in dev
    manifest = json.loads((a / "data.json").read_text())
    assert manifest["splits"]["dev"]["examples"] == len(dev) and "research use" in manifest["licence"]
    assert sum(manifest["splits"]["dev"]["per_label"].values()) == len(dev)
    assert len(_rows(c / "dev.jsonl")) > len(dev)  # --dev-share 0.25 holds out more


def test_make_topics_refuses_an_existing_folder_and_a_bad_share(topics, tmp_path, capsys):
    assert main(["data", "make-topics", "--out", str(topics / "a")]) == 2
    assert main(["data", "make-topics", "--out", str(tmp_path / "x"), "--dev-share", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--force" in err[0] and "--dev-share" in err[1] and not (tmp_path / "x").exists()


def test_readers_agree_across_formats(tmp_path):
    rows = [("A fine, warm film.", "pos"), ('He said "no" twice', "neg"), ("Tabs\tare not in CSV", "pos")]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows) + "\n")
    (tmp_path / "d.csv").write_text("label,text\n" + "".join(f'{label},"{t.replace(chr(34), 2 * chr(34))}"\n'
                                                             for t, label in rows))
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{t.replace(chr(9), ' ')}\t{label}\n" for t, label in rows))
    for name in ("d.jsonl", "d.csv"):
        data = read_labelled_file(tmp_path / name)
        assert list(zip(data.texts, data.labels)) == rows, name
    tsv = read_labelled_file(tmp_path / "d.tsv")
    assert tsv.texts[1] == 'He said "no" twice' and tsv.labels == ["pos", "neg", "pos"]  # no quoting in TSV
    custom = tmp_path / "custom.csv"
    custom.write_text("review,stars\ngood,5\nbad,1\n")
    data = read_labelled_file(custom, text_column="review", label_column="stars")
    assert data.texts == ["good", "bad"] and data.labels == ["5", "1"]


def test_sst2_tsv_with_numeric_labels(tmp_path):
    (tmp_path / "train.tsv").write_text('sentence\tlabel\nit \'s a charming and often affecting journey . \t1\n'
                                        'unflinchingly bleak and desperate \t0\n" the film is strictly routine . \t0\n')
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\na gorgeous , witty , seductive movie . \t1\n")
    data = load_classify_data(tmp_path / "train.tsv", tmp_path / "dev.tsv")
    assert data.labels == ["0", "1"] and data.labels_source == "the training labels"
    assert data.label_ids(data.train) == [1, 0, 0] and data.train.texts[2].startswith('" the film')
    assert sorted_labels(["10", "2", "1"]) == ["1", "2", "10"]


def test_labels_txt_beside_train_sets_the_order(tmp_path):
    (tmp_path / "labels.txt").write_text("tech\nsport\nbusiness\n")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "sport"}\n{"text": "b", "label": "tech"}\n')
    data = load_classify_data(tmp_path / "train.jsonl", tmp_path / "train.jsonl")
    assert data.labels == ["tech", "sport", "business"] and data.label_ids(data.train) == [1, 0]


def _bad_files(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "shares rose", "label": "business"}\n{"text": "a late goal", "label": "sport"}\n')
    (tmp_path / "cols.csv").write_text("review,label\ngood,business\n")
    (tmp_path / "unknown.jsonl").write_text('{"text": "new phone", "label": "tech"}\n')
    (tmp_path / "empty.tsv").write_text("sentence\tlabel\n")
    (tmp_path / "latin1.csv").write_bytes("text,label\ncaf\xe9,business\n".encode("latin-1"))
    (tmp_path / "broken.jsonl").write_text('{"text": "ok", "label": "sport"}\n{"text": "cut\n')
    (tmp_path / "nolabel.jsonl").write_text('{"text": "ok", "label": "sport"}\n{"text": "no label here"}\n')
    return good, {
        "cols.csv": ("train", "columns found: review, label"),
        "unknown.jsonl": ("dev", "label 'tech'"),
        "empty.tsv": ("dev", "holds no examples"),
        "missing.jsonl": ("dev", "does not exist"),
        "latin1.csv": ("train", "not UTF-8"),
        "broken.jsonl": ("dev", "line 2 is not valid JSON"),
        "nolabel.jsonl": ("train", "line 2 has no column 'label'"),
        "bad.txt": ("train", "not a .jsonl, .csv or .tsv"),
    }


def test_every_bad_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    good, cases = _bad_files(tmp_path)
    (tmp_path / "bad.txt").write_text("text label\n")
    for name, (role, expected) in cases.items():
        train, dev = (tmp_path / name, good) if role == "train" else (good, tmp_path / name)
        out = tmp_path / f"run-{name}"
        # --model is never read: the data is checked before any model is loaded.
        code = main(["finetune", "classify", "--model", str(tmp_path / "no-model"), "--train", str(train),
                     "--dev", str(dev), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0] and not out.exists(), (name, err)


def test_unknown_label_names_the_label_list(tmp_path):
    (tmp_path / "labels.txt").write_text("business\nsport\n")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "sport"}\n{"text": "b", "label": "tech"}\n')
    with pytest.raises(PocketbertError, match=r"line 2 has the label 'tech', which is not in .*labels.txt \(business, sport\)"):
        load_classify_data(tmp_path / "train.jsonl", tmp_path / "train.jsonl")
    alone = tmp_path / "alone"  # no labels.txt beside it: the training labels are the list
    alone.mkdir()
    (alone / "one.jsonl").write_text('{"text": "a", "label": "sport"}\n')
    with pytest.raises(PocketbertError, match="only the label 'sport'"):
        load_classify_data(alone / "one.jsonl", alone / "one.jsonl")
