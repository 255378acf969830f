"""Labelled text for classification: JSON lines, CSV, TSV (GLUE single-sentence tasks such as SST-2), read and
checked up front so that a bad file is one line naming the problem, never a traceback half-way through training.

    JSONL  one object per line: {"text": ..., "label": ...}         (make-topics writes this)
    CSV    a header row, then rows; standard quoting
    TSV    a header row, then rows; no quoting (GLUE's convention: SST-2's sentences hold bare quote marks)

The text column defaults to "text", else "sentence" (GLUE); the label column to "label". Labels are names
(strings): SST-2's 0/1 stay "0"/"1". The label list is labels.txt beside the training file when there is one,
else the training labels sorted (numerically when every label is an integer); a label id is its place in the list.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pocketbert.errors import PocketbertError

TEXT_COLUMNS = ("text", "sentence")  # tried in this order when --text-column is not given
LABEL_COLUMN = "label"
LABELS_FILE = "labels.txt"
FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}


@dataclass(frozen=True)
class LabelledText:
    """One file's examples in file order, with each one's line number so later checks can point at the bad row."""

    texts: list[str]
    labels: list[str]  # label names, as written in the file
    path: Path
    lines: list[int]  # the file line of each example, for messages


def read_labelled_file(path: str | Path, text_column: str | None = None, label_column: str | None = None) -> LabelledText:
    """Every (text, label) row of a .jsonl/.csv/.tsv file; one line naming the file for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise PocketbertError(f"labelled data '{path}' {state}; pass a .jsonl, .csv or .tsv file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PocketbertError(f"'{path}' is not a .jsonl, .csv or .tsv file; save the data in one of those formats "
                              f"with a text and a label column")
    try:
        raw = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not part of a column name
    except UnicodeDecodeError as err:
        raise PocketbertError(f"'{path}' is not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
    except OSError as err:
        raise PocketbertError(f"'{path}' cannot be read ({err.strerror}); check its permissions") from None
    rows = _jsonl_rows(raw, path) if kind == "jsonl" else _table_rows(raw, path, kind)
    text_key, label_key = _columns(rows, path, text_column, label_column)
    texts, labels, lines = [], [], []
    for line, row in rows:
        text, label = row.get(text_key), row.get(label_key)
        if not isinstance(text, str) or not text.strip():
            raise PocketbertError(f"'{path}' line {line}: the text column '{text_key}' is empty or not a string; "
                                  "remove the row or fill it in")
        if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
            raise PocketbertError(f"'{path}' line {line}: the label column '{label_key}' is empty or not a string or "
                                  "integer; remove the row or fill it in")
        texts.append(text)
        labels.append(str(label).strip())
        lines.append(line)
    return LabelledText(texts, labels, path, lines)


def _jsonl_rows(raw: str, path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(raw.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PocketbertError(f"'{path}' line {number} is not valid JSON ({err.msg}); JSON lines hold one "
                                  "object per line") from None
        if not isinstance(row, dict):
            raise PocketbertError(f"'{path}' line {number} is not a JSON object; JSON lines hold one "
                                  '{"text": ..., "label": ...} object per line')
        rows.append((number, row))
    return rows


def _table_rows(raw: str, path: Path, kind: str) -> list[tuple[int, dict]]:
    source = io.StringIO(raw, newline="")  # newline="": a quoted CSV field may span lines
    reader = csv.reader(source, delimiter="\t", quoting=csv.QUOTE_NONE) if kind == "tsv" else csv.reader(source)
    try:
        header = next(reader, None)
        if header is None:
            return []
        header = [name.strip() for name in header]
        rows = []
        for values in reader:
            number = reader.line_num
            if not any(value.strip() for value in values):
                continue
            if len(values) != len(header):
                raise PocketbertError(f"'{path}' line {number} has {len(values)} fields but the header has "
                                      f"{len(header)}; fix the row (a {kind.upper()} needs one value per column)")
            rows.append((number, dict(zip(header, values))))
    except csv.Error as err:
        raise PocketbertError(f"'{path}' is not a readable {kind.upper()} file ({err}); fix its quoting") from None
    return rows


def _columns(rows, path: Path, text_column: str | None, label_column: str | None) -> tuple[str, str]:
    if not rows:
        raise PocketbertError(f"'{path}' holds no examples; pass a file with at least one labelled row")
    found = list(rows[0][1])
    if text_column is None:
        text_column = next((name for name in TEXT_COLUMNS if name in found), None)
        if text_column is None:
            raise PocketbertError(f"'{path}' has no text column ({' or '.join(TEXT_COLUMNS)}); columns found: "
                                  f"{', '.join(found) or 'none'}; pass --text-column NAME")
    label_column = label_column or LABEL_COLUMN
    for option, name in (("--text-column", text_column), ("--label-column", label_column)):
        for line, row in rows:
            if name not in row:
                where = "" if line == rows[0][0] else f" line {line}"
                raise PocketbertError(f"'{path}'{where} has no column '{name}'; columns found: "
                                      f"{', '.join(row) or 'none'}; pass {option} NAME")
    return text_column, label_column


def sorted_labels(names) -> list[str]:
    """Label names in labels.txt order: numerically when every one is an integer ("2" before "10"), else by text."""
    names = set(names)
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def read_labels_file(path: str | Path) -> list[str]:
    """Label names from a labels.txt, one per line, in id order; refused when unreadable, duplicated or fewer than 2."""
    path = Path(path)
    if not path.is_file():
        raise PocketbertError(f"label list '{path}' does not exist; pass a labels.txt with one label name per line")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as err:
        raise PocketbertError(f"label list '{path}' cannot be read ({err}); re-save it as UTF-8 text") from None
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise PocketbertError(f"label list '{path}' names {', '.join(duplicates)} more than once; keep one line each")
    if len(names) < 2:
        raise PocketbertError(f"label list '{path}' has {len(names)} label(s); a classifier needs at least 2")
    return names


@dataclass(frozen=True)
class ClassifyData:
    """What a classification run trains on and scores against, read and checked: label ids follow `labels`."""

    labels: list[str]
    labels_source: str  # where the label list came from, for run.json
    train: LabelledText
    dev: LabelledText

    def label_ids(self, split: LabelledText) -> list[int]:
        """A split's labels as ids, their places in `labels` (load_classify_data has checked that each is there)."""
        index = {name: i for i, name in enumerate(self.labels)}
        return [index[name] for name in split.labels]


def load_classify_data(train: str | Path, dev: str | Path, labels: str | Path | None = None,
                       text_column: str | None = None, label_column: str | None = None,
                       max_train_examples: int | None = None, max_dev_examples: int | None = None) -> ClassifyData:
    """Read train and dev, settle the label list (--labels, else labels.txt beside train, else the training labels)
    and refuse a label outside it, naming the file, the line and the known labels."""
    train_set = _first(read_labelled_file(train, text_column, label_column), max_train_examples)
    dev_set = _first(read_labelled_file(dev, text_column, label_column), max_dev_examples)
    beside = Path(train).parent / LABELS_FILE
    if labels is not None:
        names, source = read_labels_file(labels), str(labels)
    elif beside.is_file():
        names, source = read_labels_file(beside), str(beside)
    else:
        names, source = sorted_labels(train_set.labels), "the training labels"
        if len(names) < 2:
            raise PocketbertError(f"'{train}' has only the label '{names[0]}'; a classifier needs at least 2 labels "
                                  "in its training data")
    known = set(names)
    for split, what in ((train_set, "train"), (dev_set, "dev")):
        unknown = next((i for i, name in enumerate(split.labels) if name not in known), None)
        if unknown is not None:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise PocketbertError(f"{what} file '{split.path}' line {split.lines[unknown]} has the label "
                                  f"'{split.labels[unknown]}', which is not in {source} ({shown}); fix the label or "
                                  "the label list")
    return ClassifyData(names, source, train_set, dev_set)


def _first(data: LabelledText, count: int | None) -> LabelledText:
    if count is None:
        return data
    return LabelledText(data.texts[:count], data.labels[:count], data.path, data.lines[:count])
