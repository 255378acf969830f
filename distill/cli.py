"""`pocketbert distill init|mlm|fit-mlm-head|qa|classify|throughput|ablation` and `pocketbert finetune qa|classify`."""
from __future__ import annotations

from pocketbert.options import above, at_least, check_options, qa_window_problems
from pocketbert.qa import DOC_STRIDE, MAX_QUERY_LEN, MAX_SEQ_LEN, QAWindow

# Each subcommand imports the stage code it runs inside its own function, so `pocketbert --help` stays fast.


def register(sub) -> None:
    distill = sub.add_parser("distill", help="build a DistilBERT student from a BERT teacher and distill it",
                             description="DistilBERT: student init, MLM distillation, QA (task) distillation.")
    steps = distill.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser("init", help="a DistilBERT student initialised from every other teacher layer")
    p.add_argument("teacher", help="BERT checkpoint folder (BertModel, BertFor*, e.g. the embedded MiniLM)")
    p.add_argument("--out", required=True, help="student checkpoint folder to write")
    p.add_argument("--layers", type=int, help="student layers (default: half the teacher's)")
    p.add_argument("--layer-map", help="teacher layers to copy, e.g. 0,2,4,7,9,11 (default: evenly spaced)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=run_init)

    p = steps.add_parser("mlm", help="MLM distillation: a_ce*L_ce + a_mlm*L_mlm + a_cos*L_cos on raw text")
    _add_text_options(p, teacher_help="BERT checkpoint (with an MLM head for L_ce)")
    p.add_argument("--student", required=True, help="student checkpoint from `distill init`")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-ce", type=float, default=5.0, help="weight of KL to the teacher's MLM distribution (0: off)")
    p.add_argument("--alpha-mlm", type=float, default=2.0, help="weight of the masked-LM loss (0: off)")
    p.add_argument("--alpha-cos", type=float, default=1.0, help="weight of the hidden-state cosine loss (0: off)")
    _add_training_options(p, lr=5e-4, batch_size=16, epochs=1.0)
    p.set_defaults(func=run_mlm)

    p = steps.add_parser("fit-mlm-head", help="fit an MLM head on a frozen teacher that has none (enables L_ce)")
    _add_text_options(p, teacher_help="BERT checkpoint without an MLM head")
    _add_training_options(p, lr=1e-3, batch_size=16, epochs=1.0)
    p.set_defaults(func=run_fit_mlm_head)

    p = steps.add_parser("qa", help="QA distillation: a_ce*KL(start,end)*T^2 + a_task*CE(gold spans) + a_cos*L_cos")
    p.add_argument("--teacher", required=True, help="QA checkpoint (e.g. from `pocketbert finetune qa`)")
    p.add_argument("--student", required=True, help="student checkpoint (from `distill init` or `distill mlm`)")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-ce", type=float, default=0.5, help="weight of the KL to the teacher's start/end logits")
    p.add_argument("--alpha-task", type=float, default=0.5, help="weight of the cross-entropy to the gold span")
    p.add_argument("--alpha-cos", type=float, default=0.0,
                   help="weight of the cosine loss between student and teacher last hidden states (0: off)")
    p.add_argument("--no-teacher-cache", action="store_true",
                   help="run the teacher on every step (default: once per window, its logits reused every epoch)")
    _add_qa_options(p)
    p.set_defaults(func=run_distill_qa)

    p = steps.add_parser("throughput", help="windows/s of QA distillation: per-batch padding and the teacher cache "
                                            "against the trainer without them (a benchmark)")
    p.add_argument("--teacher", required=True, help="QA checkpoint")
    p.add_argument("--student", required=True, help="student checkpoint")
    _add_qa_training_options(p)
    p.set_defaults(func=run_throughput)

    p = steps.add_parser("ablation", help="the paper's Table 4 in miniature: triple loss vs without L_ce / L_cos / "
                                          "L_mlm / random init, each QA fine-tuned and scored alike; task distillation")
    p.add_argument("--out", default="runs/ablation", help="where every arm writes (default runs/ablation); reruns reuse finished arms")
    p.add_argument("--teacher", help="BERT checkpoint (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every step budget and the training questions (default 1: sized for 2 CPU cores, "
                        "83 min there with other jobs running, see README; e.g. 20 on a GPU)")
    p.add_argument("--max-articles", type=int, help="BBC articles for the QA data and the text (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="redo every arm instead of reusing finished ones")
    p.set_defaults(func=run_ablation)

    p = steps.add_parser("classify", help="classification distillation: a_ce*KL(teacher||student at T)*T^2 + "
                                          "a_cls*CE(gold labels)")
    p.add_argument("--teacher", required=True, help="classifier checkpoint (e.g. from `pocketbert finetune classify`)")
    p.add_argument("--student", required=True, help="student checkpoint (from `distill init` of that teacher)")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-ce", type=float, default=0.5, help="weight of the KL to the teacher's label distribution")
    p.add_argument("--alpha-cls", type=float, default=0.5, help="weight of the cross-entropy to the gold labels")
    p.add_argument("--no-teacher-cache", action="store_true",
                   help="run the teacher on every step (default: once per text, its logits reused every epoch)")
    _add_classify_options(p)
    p.set_defaults(func=run_distill_classify)

    finetune = sub.add_parser("finetune", help="train a model on a task without a teacher")
    tasks = finetune.add_subparsers(dest="task", metavar="TASK", required=True)
    p = tasks.add_parser("qa", help="extractive-QA fine-tuning (adds a fresh QA head where there is none)")
    p.add_argument("model", help="checkpoint folder (BERT, DistilBERT, the embedded MiniLM, a `distill init` student)")
    _add_qa_options(p)
    p.set_defaults(func=run_finetune_qa)
    p = tasks.add_parser("classify", help="text-classification fine-tuning (a fresh head over the data's labels "
                                          "where there is none)")
    p.add_argument("--model", help="checkpoint folder (BERT, DistilBERT, a `distill init` student; default: the "
                                    "embedded all-MiniLM-L6-v2)")
    _add_classify_options(p)
    p.set_defaults(func=run_finetune_classify)


def _add_text_options(p, teacher_help: str) -> None:
    p.add_argument("--teacher", required=True, help=teacher_help)
    p.add_argument("--text", required=True, help="UTF-8 text file, one paragraph per line")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per training window (default 128)")


def _add_training_options(p, lr: float, batch_size: int, epochs: float) -> None:
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, final model, run.json")
    p.add_argument("--epochs", type=float, default=epochs, help=f"default {epochs}")
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimiser steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"per device (default {batch_size})")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr})")
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up as a fraction of all steps (default 0.1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint every N steps, last 2 kept (default 500)")
    p.add_argument("--logging-steps", type=int, default=10, help="metrics.jsonl record every N steps (default 10)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    p.add_argument("--force", action="store_true", help="delete OUT and start over")
    p.add_argument("--pad-to-max", action="store_true",
                   help="pad every window to the maximum length (default: each batch to its longest window, "
                        "batches grouped by length; faster, same losses)")


def _add_classify_options(p) -> None:
    p.add_argument("--train", required=True, help=".jsonl / .csv / .tsv with text and label columns (e.g. from "
                                                  "`pocketbert data make-topics`, or GLUE SST-2's train.tsv)")
    p.add_argument("--dev", required=True, help="the same kind of file, scored after training (accuracy, macro-F1 in run.json)")
    p.add_argument("--labels", help="label names, one per line, in id order (default: labels.txt beside --train, "
                                    "else the training labels sorted)")
    p.add_argument("--text-column", help="column holding the text (default: text, else sentence)")
    p.add_argument("--label-column", help="column holding the label (default: label)")
    p.add_argument("--max-seq-len", type=int, default=256, help="tokens per text, longer ones cut (default 256)")
    p.add_argument("--max-train-examples", type=int, help="use only the first N training texts")
    p.add_argument("--max-dev-examples", type=int, help="score only the first N dev texts")
    _add_training_options(p, lr=5e-5, batch_size=16, epochs=3.0)


def _add_qa_options(p) -> None:
    p.add_argument("--dev", required=True, help="SQuAD v1.1 JSON scored after training (EM/F1 in run.json)")
    p.add_argument("--max-dev-examples", type=int, help="score only the first N dev questions")
    p.add_argument("--eval-steps", type=int, default=0,
                   help="also score dev every N steps: the dev F1 curve in metrics.jsonl and loss.png (default: at the end only)")
    _add_qa_training_options(p)


def _add_qa_training_options(p) -> None:
    p.add_argument("--train", required=True, help="SQuAD v1.1 JSON (e.g. from `pocketbert data make-qa`)")
    p.add_argument("--max-seq-len", type=int, default=MAX_SEQ_LEN, help=f"default {MAX_SEQ_LEN}")
    # None when not given: the default, fitted to the window; a value given must fit (see qa_window_problems).
    p.add_argument("--doc-stride", type=int, help=f"default {DOC_STRIDE} (less in short windows)")
    p.add_argument("--max-query-len", type=int, help=f"default {MAX_QUERY_LEN} (at most half a short window)")
    p.add_argument("--max-train-examples", type=int, help="use only the first N training questions")
    _add_training_options(p, lr=5e-5, batch_size=16, epochs=2.0)


def check_distill_options(args) -> None:
    """Every numeric option of a distill / finetune command in range, before any model is loaded: one line naming
    each option out of range. Options a command does not have are skipped."""
    get = lambda name: getattr(args, name, None)  # noqa: E731
    window = qa_window_problems(args.max_seq_len, args.doc_stride, args.max_query_len) \
        if get("max_seq_len") is not None else []
    check_options(at_least("--layers", get("layers"), 1), at_least("--seq-len", get("seq_len"), 8),
                  above("--temperature", get("temperature"), 0), at_least("--alpha-ce", get("alpha_ce"), 0),
                  at_least("--alpha-mlm", get("alpha_mlm"), 0), at_least("--alpha-cos", get("alpha_cos"), 0),
                  at_least("--alpha-task", get("alpha_task"), 0),
                  at_least("--max-train-examples", get("max_train_examples"), 1),
                  at_least("--max-dev-examples", get("max_dev_examples"), 1), *window,
                  above("--scale", get("scale"), 0), at_least("--max-articles", get("max_articles"), 2),
                  at_least("--seed", get("seed"), 0))


def _train_config(args):
    from pocketbert.distill.trainer import TrainConfig

    check_distill_options(args)
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, grad_accum=args.grad_accum,
                       seed=args.seed, save_steps=args.save_steps, max_steps=args.max_steps, warmup=args.warmup,
                       logging_steps=args.logging_steps, resume=args.resume, force=args.force,
                       dynamic_padding=not args.pad_to_max, teacher_cache=not getattr(args, "no_teacher_cache", False),
                       eval_steps=getattr(args, "eval_steps", 0)).checked()


def _print_run(run: dict, out) -> None:
    if not run:
        return
    scores = run.get("final_dev")
    if scores:
        print(f"dev EM {scores['exact_match']:.2f}  F1 {scores['f1']:.2f}  ({scores['count']} questions)")
    print(f"{run['global_step']} steps, train loss {run['train_loss']:.4f}; wrote {out} (run.json, metrics.jsonl)")


def run_init(args) -> int:
    from pocketbert.distill.student import init_student, parse_layer_map

    check_distill_options(args)
    summary = init_student(args.teacher, args.out, args.layers, parse_layer_map(args.layer_map), args.force)
    print(f"student: teacher layers {summary['layer_map']} of {summary['teacher_layers']}; "
          f"{summary['student_parameters']:,} encoder parameters vs the teacher's {summary['teacher_parameters']:,}; "
          f"MLM head {'copied' if summary['mlm_head_copied'] else 'fresh (teacher has none)'}"
          f"{'; classification head copied' if summary.get('classifier_head_copied') else ''}")
    print(f"wrote {args.out}")
    return 0


def run_mlm(args) -> int:
    from pocketbert.distill.mlm_train import distill_mlm

    run = distill_mlm(args.teacher, args.student, args.text, args.out, _train_config(args), args.temperature,
                      args.alpha_ce, args.alpha_mlm, args.alpha_cos, args.seq_len)
    _print_run(run, args.out)
    return 0


def run_fit_mlm_head(args) -> int:
    from pocketbert.distill.mlm_train import fit_mlm_head

    _print_run(fit_mlm_head(args.teacher, args.text, args.out, _train_config(args), args.seq_len), args.out)
    return 0


def _window(args):
    return QAWindow(args.max_seq_len, DOC_STRIDE if args.doc_stride is None else args.doc_stride,
                    MAX_QUERY_LEN if args.max_query_len is None else args.max_query_len)


def _qa_data(args):
    from pocketbert.distill.qa_train import QAData

    return QAData(args.train, args.dev, _window(args), args.max_train_examples, args.max_dev_examples)


def run_distill_qa(args) -> int:
    from pocketbert.distill.qa_train import QALoss, train_qa

    run = train_qa(args.student, _qa_data(args), args.out, _train_config(args),
                   QALoss(args.teacher, args.temperature, args.alpha_ce, args.alpha_task, args.alpha_cos))
    _print_run(run, args.out)
    return 0


def run_finetune_qa(args) -> int:
    from pocketbert.distill.qa_train import FINE_TUNING, train_qa

    run = train_qa(args.model, _qa_data(args), args.out, _train_config(args), FINE_TUNING)
    _print_run(run, args.out)
    return 0


def _run_classify(args, model, loss) -> int:
    """Options in range, then the data read and checked, then training: each failure one line, nothing written."""
    from pocketbert.data.labelled_text import load_classify_data
    from pocketbert.distill.classify_train import check_classify_options, train_classifier
    from pocketbert.distill.trainer import TrainConfig

    check_options(at_least("--max-train-examples", args.max_train_examples, 1),
                  at_least("--max-dev-examples", args.max_dev_examples, 1))
    check_classify_options(args.max_seq_len, loss)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, grad_accum=args.grad_accum,
                         seed=args.seed, save_steps=args.save_steps, max_steps=args.max_steps, warmup=args.warmup,
                         logging_steps=args.logging_steps, resume=args.resume, force=args.force,
                         dynamic_padding=not args.pad_to_max,
                         teacher_cache=not getattr(args, "no_teacher_cache", False)).checked()
    data = load_classify_data(args.train, args.dev, args.labels, args.text_column, args.label_column,
                              args.max_train_examples, args.max_dev_examples)
    run = train_classifier(model, data, args.out, config, loss, args.max_seq_len)
    if run:
        scores = run["final_dev"]
        print(f"dev accuracy {scores['accuracy']:.2f}  macro-F1 {scores['macro_f1']:.2f}  ({scores['count']} texts, "
              f"{len(run['labels'])} labels)")
        print(f"{run['global_step']} steps, train loss {run['train_loss']:.4f}; wrote {args.out} (run.json, metrics.jsonl)")
    return 0


def run_finetune_classify(args) -> int:
    from pocketbert.distill.classify_train import FINE_TUNING
    from pocketbert.modeling import embedded_teacher_dir

    return _run_classify(args, args.model or embedded_teacher_dir(), FINE_TUNING)


def run_distill_classify(args) -> int:
    from pocketbert.distill.classify_train import ClassifyLoss

    return _run_classify(args, args.student, ClassifyLoss(args.teacher, args.temperature, args.alpha_ce, args.alpha_cls))


def run_throughput(args) -> int:
    from pocketbert.distill.throughput import compare_throughput

    report = compare_throughput(args.teacher, args.student, args.train, args.out, _train_config(args), _window(args),
                                args.max_train_examples)
    print(report.read_text())
    return 0


def run_ablation(args) -> int:
    from pocketbert.distill.ablation import AblationSettings, run_ablation

    check_distill_options(args)
    settings = AblationSettings(teacher=args.teacher, max_articles=args.max_articles, seed=args.seed).scaled(args.scale)
    report = run_ablation(args.out, settings, fresh=args.fresh)
    print(report.read_text())
    return 0
