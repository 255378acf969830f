"""`pocketbert export MODEL --format F ...`"""
from __future__ import annotations

from pocketbert.export.base import DEFAULT_SEQ_LENS
from pocketbert.export.registry import format_class, format_names

# Each subcommand imports the stage code it runs inside its own function, so `pocketbert --help` stays fast.


def register(sub) -> None:
    p = sub.add_parser("export", help="export a QA or classifier checkpoint to ExecuTorch / Core ML / TFLite / ONNX, "
                                      "validated",
                       description="Export a BERT-family extractive-QA or text-classification model (the task is read "
                                   "from its config) and validate it in its own runtime.")
    p.add_argument("model", nargs="?", help="checkpoint directory, hub id, or preset bert-base / distilbert-base (random weights: cost only)")
    p.add_argument("--format", choices=format_names())
    p.add_argument("--precision", default="fp32",
                   help="; ".join(f"{name}: {', '.join(format_class(name).precisions)}" for name in format_names())
                        + " (int8-static and a16w8 are calibrated: int8 / 16-bit activations; default fp32)")
    p.add_argument("--seq-len", type=int, nargs="+", default=list(DEFAULT_SEQ_LENS), metavar="N",
                   help="fixed sequence lengths (TFLite signatures, Core ML enumerated shapes); default "
                        + " ".join(map(str, DEFAULT_SEQ_LENS)))
    p.add_argument("--dynamic", action="store_true", help="a sequence-length range up to max_position_embeddings instead")
    p.add_argument("--backend", help="executorch: xnnpack (default) or coreml")
    p.add_argument("--deployment-target", help="coreml: minimum OS, e.g. iOS17 (default), iOS18, macOS14")
    p.add_argument("--calibration", metavar="FILE",
                   help="int8-static, a16w8 (onnx, tflite): SQuAD v1.1 JSON (QA) or labelled .jsonl/.csv/.tsv texts "
                        "(classification) that calibrate the activation ranges (default: questions generated from, or "
                        "articles of, the BBC news that ships with pocketbert)")
    p.add_argument("--out", help="output folder (artifact + manifest.json + tokenizer)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--list-support", action="store_true",
                   help="print which architectures export to which format and precision (markdown), and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from pocketbert.errors import PocketbertError
    from pocketbert.export.api import describe, export_model, support_table

    if args.list_support:
        print(support_table(), end="")
        return 0
    if not (args.model and args.format and args.out):
        raise PocketbertError("pass MODEL, --format and --out (or --list-support to see what exports)")
    check_export_options(args)

    manifest = export_model(args.model, args.format, args.out, precision=args.precision,
                            seq_lens=tuple(args.seq_len), dynamic=args.dynamic, backend=args.backend,
                            deployment_target=args.deployment_target, calibration=args.calibration,
                            force=args.force)
    print(describe(manifest))
    print(f"wrote {args.out}")
    return 0


def check_export_options(args) -> None:
    """What can be judged before the model is loaded and converted: --seq-len in range, --deployment-target known
    and read by this export, --calibration a SQuAD file with questions (a warning when it has fewer than a
    calibration uses). export_model checks the same again, later, for callers of the API."""
    from pocketbert.export.calibration import check_calibration_file
    from pocketbert.export.deployment_targets import check_deployment_target
    from pocketbert.export.registry import format_class
    from pocketbert.options import check_options, each_at_least
    from pocketbert.tasks import task_of_folder

    check_options(each_at_least("--seq-len", args.seq_len, 8))
    exporter = format_class(args.format)
    backend = args.backend or (exporter.backends[0] if exporter.backends else None)
    if args.backend is None or args.backend in exporter.backends:
        check_deployment_target(args.format, backend, args.deployment_target)
    if args.calibration is not None and args.precision in exporter.calibrated_precisions:
        check_calibration_file(args.calibration, task=task_of_folder(args.model))
