"""`pocketbert bench MODEL...`, `pocketbert bench peers CHECKPOINT`, `pocketbert bench onnx-int8-settings ARTIFACT`,
`pocketbert bench op-profile MODEL...`, `pocketbert bench gemm` and `pocketbert eval MODEL... --data dev.json`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pocketbert.bench.report import Goals
from pocketbert.classification import EVAL_LENGTH as CLASSIFY_LENGTH
from pocketbert.qa import DOC_STRIDE, MAX_QUERY_LEN, MAX_SEQ_LEN
from pocketbert.results import MODES

# Each subcommand imports the stage code it runs inside its own function, so `pocketbert --help` stays fast.

MODELS_HELP = "exported artifact folders (with manifest.json) and/or checkpoint folders (PyTorch eager)"
PEERS = "peers"
ONNX_INT8_SETTINGS = "onnx-int8-settings"
OP_PROFILE = "op-profile"
GEMM = "gemm"


class BenchParser(argparse.ArgumentParser):
    """`bench MODEL...` and `bench peers CHECKPOINT` (or another named comparison): argparse cannot give one parser
    both a list of positionals and subcommands, so a comparison's name first hands the rest of the line to its
    parser."""

    comparisons: dict[str, argparse.ArgumentParser]

    def parse_known_args(self, args=None, namespace=None):
        if args and args[0] in self.comparisons:
            return self.comparisons[args[0]].parse_known_args(args[1:], namespace)
        where = self._comparison_after_options(args or [])
        if where is not None:
            # `bench --out X gemm ...`: options before the comparison's name are the comparison's options too.
            return self.comparisons[args[where]].parse_known_args(args[where + 1:] + args[:where], namespace)
        return super().parse_known_args(args, namespace)

    def _comparison_after_options(self, args: list[str]) -> int | None:
        """The index of a comparison name that follows only options (and their values), or None."""
        index = 0
        while index < len(args):
            arg = args[index]
            if not arg.startswith("-") or arg == "--":
                return index if index and arg in self.comparisons else None
            action = self._option_string_actions.get(arg.split("=", 1)[0])
            index += 1
            if action is not None and "=" not in arg and action.nargs != 0:
                if action.nargs in (None, 1):
                    index += 1
                else:  # a list option takes values up to the next option
                    while index < len(args) and not args[index].startswith("-"):
                        index += 1
        return None


NO_VERIFY_HELP = ("use artifacts whose file no longer matches the sha256 their manifest recorded at export "
                  "(by default such a file is refused: it changed or was cut short)")


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure size, memory, load time and latency against a BERT-base baseline",
                       description="Benchmark artifacts and checkpoints of one task (question answering or text "
                                   "classification), interleaved with a baseline of the same head; writes "
                                   "results.json, report.md and PNG plots. `pocketbert bench peers CHECKPOINT` "
                                   "compares our exports with the standard exporters' (see `bench peers -h`); "
                                   "`pocketbert bench onnx-int8-settings ARTIFACT` compares ONNX Runtime int8 "
                                   "settings on this CPU; `pocketbert bench op-profile MODEL...` shows where each "
                                   "model's time goes, per op type; `pocketbert bench gemm` how fast each runtime's "
                                   "fp32 and int8 kernels multiply matrices here.")
    p.__class__ = BenchParser  # add_parser builds a plain ArgumentParser
    p.comparisons = {PEERS: peers_parser(p.prog), ONNX_INT8_SETTINGS: onnx_int8_settings_parser(p.prog),
                     OP_PROFILE: op_profile_parser(p.prog), GEMM: gemm_parser(p.prog)}
    p.add_argument("models", nargs="+", metavar="ARTIFACT_DIR_OR_CHECKPOINT", help=MODELS_HELP)
    p.add_argument("--baseline", default="bert-base",
                   help="baseline checkpoint with the candidates' task and head, or the preset bert-base (random "
                        "weights: cost only; built with their head: QA, or a classifier with their labels; default)")
    p.add_argument("--no-baseline", action="store_true", help="measure the given models only")
    p.add_argument("--no-export-baseline", action="store_true",
                   help="baseline on PyTorch eager only (skip exporting it to each candidate's format/precision)")
    p.add_argument("--seq-len", type=int, nargs="+", default=[384], metavar="N", help="lengths to measure (default 384)")
    p.add_argument("--sweep", type=int, nargs="*", default=[], metavar="N",
                   help="extra lengths for the model-only sweep, e.g. 32 64 128 256 384 512")
    p.add_argument("--warmup", type=int, default=10, help="warm-up runs per model (default 10)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    p.add_argument("--threads", type=int, help="threads for every runtime (default: all usable cores)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                   help="model only and/or end-to-end (tokenise + model + decode the answer span, or pick the label); "
                        "default both")
    p.add_argument("--merge", nargs="+", default=[], metavar="RESULTS_JSON", help="results.json files to join in")
    goals = p.add_argument_group("goals", "targets the report's Goals section judges against, all at --goal-seq-len")
    goals.add_argument("--goal-distil-speedup", type=float, default=Goals.distil_speedup, metavar="X",
                       help=f"fp32 candidate vs the baseline in the same runtime (default {Goals.distil_speedup})")
    goals.add_argument("--goal-mobile-speedup", type=float, default=Goals.mobile_speedup, metavar="X",
                       help=f"best int8 artifact vs the baseline in fp32 PyTorch eager (default {Goals.mobile_speedup})")
    goals.add_argument("--goal-mobile-shrink", type=float, default=Goals.mobile_shrink, metavar="X",
                       help=f"its size ratio to the baseline checkpoint (default {Goals.mobile_shrink})")
    goals.add_argument("--goal-flop-bound", type=float, default=Goals.flop_bound, metavar="X",
                       help=f"fp32 latency at most X times the FLOP bound (default {Goals.flop_bound})")
    goals.add_argument("--goal-seq-len", type=int, default=Goals.seq_len, metavar="N",
                       help=f"the length the goals are judged at (default {Goals.seq_len})")
    p.add_argument("--out", default="bench-out", help="output folder (default bench-out)")
    p.add_argument("--no-verify", action="store_true", help=NO_VERIFY_HELP)
    p.set_defaults(func=run_bench_cli)

    e = sub.add_parser("eval", help="dev-set accuracy of artifacts in their own runtime, next to PyTorch: SQuAD v1.1 "
                                     "EM/F1 (QA) or accuracy/macro-F1 (text classification)",
                       description="Evaluate artifacts (or checkpoints) of one task, read from each manifest or "
                                   "config: question answering on a SQuAD v1.1 file (EM/F1), or text classification on "
                                   "a labelled .jsonl/.csv/.tsv file (accuracy, macro-F1, each label's precision and "
                                   "recall). Flags artifacts below fp32 that keep less than 93% of the fp32 source's "
                                   "F1 or accuracy (MLPerf Mobile rule). With --out, each model's predictions go to "
                                   "OUT/predictions/MODEL/: QA's predictions.json (the official SQuAD v1.1 script's "
                                   "input), nbest_predictions.json and question_scores.json; a classifier's "
                                   "predictions.jsonl (gold, predicted, scores per text) and confusion.png. With "
                                   "--predictions, rescore a saved QA predictions.json without a model.")
    e.add_argument("models", nargs="*", metavar="ARTIFACT_DIR_OR_CHECKPOINT", help=MODELS_HELP)
    e.add_argument("--data", required=True,
                   help="QA: a SQuAD v1.1 JSON file (e.g. dev-v1.1.json); classification: labelled text, JSON lines "
                        '{"text", "label"}, CSV or TSV (SST-2) with a header row')
    e.add_argument("--predictions", metavar="FILE",
                   help="a saved {question id: answer text} file to score against --data instead of running models")
    # None when not given: the task's default, fitted to each model; a value given must fit (see qa_window_problems).
    e.add_argument("--max-seq-len", type=int,
                   help=f"input length: QA window (default {MAX_SEQ_LEN}), or where a classifier's texts are cut "
                        f"(default {CLASSIFY_LENGTH}); an artifact of fixed lengths runs its longest one up to it")
    e.add_argument("--doc-stride", type=int, help=f"QA: window overlap (default {DOC_STRIDE}, less in short windows)")
    e.add_argument("--max-query-len", type=int,
                   help=f"QA: question tokens kept (default {MAX_QUERY_LEN}, at most half a short window)")
    e.add_argument("--labels", metavar="LABELS_TXT",
                   help="classification: label names in logit order, one per line (default: the artifact's manifest "
                        "or the checkpoint's config); every label in --data must be one of them")
    e.add_argument("--text-column", help='classification: the text column (default "text", else "sentence")')
    e.add_argument("--label-column", help='classification: the label column (default "label")')
    e.add_argument("--stand-in-questions", type=int, metavar="N",
                   help="score artifacts that only a stand-in runs here (Core ML's numpy reference evaluator off "
                        "macOS, seconds per window) on the first N questions (or texts), beside PyTorch on the same N "
                        "(default: all)")
    e.add_argument("--out", help="folder for eval.json and predictions/; a bench output folder gets the scores in its "
                                 "report")
    e.add_argument("--no-verify", action="store_true", help=NO_VERIFY_HELP)
    e.set_defaults(func=run_eval_cli)


def peers_parser(bench_prog: str) -> argparse.ArgumentParser:
    from pocketbert.bench.studies.peers import FORMATS, PRECISIONS

    p = argparse.ArgumentParser(
        prog=f"{bench_prog} {PEERS}",
        description="Export one QA checkpoint by our route and by the standard route a user would otherwise take "
                    "(ONNX: optimum-onnx's `optimum-cli export onnx` and `optimum-cli onnxruntime quantize --avx2 / "
                    "--avx512_vnni`; LiteRT: litert-torch's default conversion of the unmodified model; ExecuTorch: "
                    "its documented XNNPACK recipe on the unmodified model, and optimum-executorch's where it can "
                    "export QA), time all of them in one interleaved "
                    "run in the same runtime, runtime settings and threads, and check each against the original "
                    "transformers model. Our ONNX files are also timed under ONNX Runtime's default session options "
                    "(the route 'pocketbert, ONNX Runtime defaults'), as optimum's pipeline opens them. "
                    "Writes peers.json, report.md and peers.png; a peer whose tool is missing is a row saying so.")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a QA checkpoint folder, or a preset (bert-base, distilbert-base: random weights, cost only)")
    p.add_argument("--seq-len", type=int, default=384, metavar="N", help="the length exported and timed (default 384)")
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS, help="default: all")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS, help="default: all")
    p.add_argument("--warmup", type=int, default=10, help="warm-up runs per model (default 10)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    p.add_argument("--threads", type=int, help="threads for every runtime (default: all usable cores)")
    p.add_argument("--optimum-venv", metavar="DIR",
                   help="the venv holding optimum-cli (default: the repository's .venv-optimum, built by make setup)")
    p.add_argument("--out", default="peers-out", help="output folder (default peers-out)")
    p.set_defaults(func=run_peers_cli)
    return p


def onnx_int8_settings_parser(bench_prog: str) -> argparse.ArgumentParser:
    from pocketbert.bench.studies import onnx_int8_settings

    # The module's docstring says what it compares; its first paragraph is the help.
    summary = " ".join(onnx_int8_settings.__doc__.split("\n\n")[0].split())
    p = argparse.ArgumentParser(prog=f"{bench_prog} {ONNX_INT8_SETTINGS}",
                                description=f"{summary} Writes onnx_int8_settings.json, report.md and settings.png.")
    p.add_argument("artifact", metavar="ONNX_FP32_ARTIFACT", help="a folder from `pocketbert export ... --format onnx`")
    p.add_argument("--data", required=True, help="SQuAD v1.1 file whose questions score answer agreement")
    p.add_argument("--seq-len", type=int, default=384, metavar="N", help="window length (default 384)")
    p.add_argument("--runs", type=int, default=20, help="timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up rounds (default 3)")
    p.add_argument("--threads", type=int, help="threads (default: all usable cores)")
    p.add_argument("--out", default="onnx-int8-settings", help="output folder (default onnx-int8-settings)")
    p.set_defaults(func=run_onnx_int8_settings_cli)
    return p


def op_profile_parser(bench_prog: str) -> argparse.ArgumentParser:
    from pocketbert.bench.studies import op_profile

    summary = " ".join(op_profile.__doc__.split("\n\n")[0].split())
    p = argparse.ArgumentParser(prog=f"{bench_prog} {OP_PROFILE}",
                                description=f"{summary} Writes op_profile.json, report.md and op_profile.png.")
    p.add_argument("models", nargs="+", metavar="ARTIFACT_DIR_OR_CHECKPOINT", help=MODELS_HELP)
    p.add_argument("--seq-len", type=int, default=384, metavar="N", help="window length (default 384)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls per model (default 3)")
    p.add_argument("--runs", type=int, default=10, help="profiled calls per model (default 10)")
    p.add_argument("--threads", type=int, help="threads for every runtime (default: all usable cores)")
    p.add_argument("--top", type=int, default=10, help="op types listed per model in the report (default 10)")
    p.add_argument("--out", default="op-profile", help="output folder (default op-profile)")
    p.set_defaults(func=run_op_profile_cli)
    return p


def gemm_parser(bench_prog: str) -> argparse.ArgumentParser:
    from pocketbert.bench.studies import gemm

    summary = " ".join(gemm.__doc__.split("\n\n")[0].split())
    p = argparse.ArgumentParser(prog=f"{bench_prog} {GEMM}", description=f"{summary} Writes gemm.json, report.md "
                                                                         "and gemm.png.")
    p.add_argument("--rows", type=int, default=384, help="rows of the input: the sequence length (default 384)")
    p.add_argument("--inner", type=int, default=768, help="input width of the layer (default 768)")
    p.add_argument("--outer", type=int, default=3072, help="output width of the layer (default 3072)")
    p.add_argument("--runtimes", nargs="+", choices=tuple(gemm.RUNTIMES), default=tuple(gemm.RUNTIMES),
                   help="runtimes to measure (default all; pytorch, the reference, always runs)")
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime and torch's peaks (default 2)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up calls per runtime (default 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls per runtime (default 50)")
    p.add_argument("--out", default="gemm", help="output folder (default gemm)")
    p.set_defaults(func=run_gemm_cli)
    return p


def check_bench_options(args) -> None:
    """Every numeric option of a bench / eval command in range, before any model is loaded or exported: one line
    naming each option out of range. Options a command does not have are skipped."""
    from pocketbert.options import above, at_least, check_options, each_at_least

    get = lambda name: getattr(args, name, None)  # noqa: E731
    seq_len = get("seq_len")
    check_options(each_at_least("--seq-len", seq_len, 8) if isinstance(seq_len, list) else at_least("--seq-len", seq_len, 8),
                  each_at_least("--sweep", get("sweep"), 8), at_least("--warmup", get("warmup"), 0),
                  at_least("--runs", get("runs"), 1), at_least("--threads", get("threads"), 1),
                  at_least("--top", get("top"), 1), at_least("--rows", get("rows"), 1),
                  at_least("--inner", get("inner"), 1), at_least("--outer", get("outer"), 1),
                  above("--goal-distil-speedup", get("goal_distil_speedup"), 0),
                  above("--goal-mobile-speedup", get("goal_mobile_speedup"), 0),
                  above("--goal-mobile-shrink", get("goal_mobile_shrink"), 0),
                  above("--goal-flop-bound", get("goal_flop_bound"), 0), at_least("--goal-seq-len", get("goal_seq_len"), 8),
                  at_least("--stand-in-questions", get("stand_in_questions"), 1))


def run_gemm_cli(args) -> int:
    from pocketbert.bench.studies.gemm import measure_gemm_rates, unit, vs_reference

    check_bench_options(args)
    results = measure_gemm_rates(args.out, args.rows, args.inner, args.outer, args.threads, args.warmup, args.runs,
                                 args.runtimes)
    for row in results["rows"]:
        name = f"{row['runtime']} {row['precision']}"
        if "rate" in row:
            print(f"{name}: {row['rate']:,.0f} {unit(row['precision'])} ({vs_reference(row)} PyTorch eager fp32)")
        else:
            print(f"{name}: not measured ({row['reason']})")
    print(f"wrote {args.out}/gemm.json, {args.out}/report.md and {args.out}/gemm.png")
    return 0


def run_op_profile_cli(args) -> int:
    from pocketbert.bench.studies.op_profile import profile_models

    check_bench_options(args)
    results = profile_models(args.models, args.out, args.seq_len, args.warmup, args.runs, args.threads, args.top)
    for row in results["rows"]:
        if "reason" in row:
            print(f"{row['model']} [{row['runtime']}/{row['precision']}]: not profiled ({row['reason']})")
        else:
            print(f"{row['model']} [{row['runtime']}/{row['precision']}]: {row['wall_ms']:.1f} ms profiled, matrix "
                  f"multiplies {row['matrix_ms']:.1f} ms, other ops {row['other_ms']:.1f} ms, outside ops "
                  f"{row['outside_ops_ms']:.1f} ms")
    print(f"wrote {args.out}/op_profile.json, {args.out}/report.md and {args.out}/op_profile.png")
    return 0


def run_onnx_int8_settings_cli(args) -> int:
    from pocketbert.bench.studies.onnx_int8_settings import compare_int8_settings

    check_bench_options(args)
    compare_int8_settings(args.artifact, args.data, args.out, args.seq_len, args.runs, args.warmup, args.threads)
    print((Path(args.out) / "report.md").read_text(), end="")
    return 0


def run_peers_cli(args) -> int:
    from pocketbert.bench.measure import BenchSettings
    from pocketbert.bench.studies.peers import OPTIMUM_VENV, run_peers, versus_ours

    check_bench_options(args)
    settings = BenchSettings(warmup=args.warmup, runs=args.runs, threads=args.threads)
    results = run_peers(args.checkpoint, args.out, args.seq_len, tuple(args.formats), tuple(args.precisions), settings,
                        args.optimum_venv or OPTIMUM_VENV)
    for row in results["rows"]:
        timing = f"{row['ms']:.2f} ms, {versus_ours(row)}" if row["ms"] else row["reason"]
        print(f"{row['format']}/{row['precision']} {row['route']}: {timing}")
    print(f"wrote {args.out}/peers.json and {args.out}/report.md")
    return 0


def run_bench_cli(args) -> int:
    from pocketbert.bench.measure import Baseline, BenchSettings, run_bench
    from pocketbert.results import baseline_ratios

    check_bench_options(args)
    settings = BenchSettings(seq_lens=tuple(args.seq_len), sweep=tuple(args.sweep), modes=tuple(args.modes),
                             warmup=args.warmup, runs=args.runs, threads=args.threads)
    baseline = Baseline(None if args.no_baseline else args.baseline, exported=not args.no_export_baseline)
    goals = Goals(args.goal_distil_speedup, args.goal_mobile_speedup, args.goal_mobile_shrink, args.goal_flop_bound,
                  args.goal_seq_len)
    results = run_bench(args.models, args.out, settings, baseline, goals, merge=tuple(args.merge),
                        verify=not args.no_verify)
    for r in results["records"]:
        if r["status"] == "ok" and r["latency_ms"] and r["seq_len"] in args.seq_len:
            print(f"{r['model']} [{r['runtime']}/{r['precision']}] {r['mode']} seq {r['seq_len']}: "
                  f"mean {r['latency_ms']['mean']:.2f} ms, p90 {r['latency_ms']['p90']:.2f} ms")
        elif r["status"] != "ok":
            print(f"{r['model']} [{r['runtime']}/{r['precision']}]: {r['status']} ({r['reason']})")
    for c in baseline_ratios(results["records"]):
        if c["seq_len"] in args.seq_len:
            print(f"{c['candidate']} vs {c['baseline']} ({c['runtime']}/{c['precision']}, {c['mode']}, "
                  f"seq {c['seq_len']}): {c['words']}")
    print(f"wrote {args.out}/results.json and {args.out}/report.md")
    return 0


def run_eval_cli(args) -> int:
    from pocketbert.bench.evaluate import describe, evaluate, rescore
    from pocketbert.errors import PocketbertError

    if args.predictions:
        if args.models:
            raise PocketbertError("pass either models to run or --predictions FILE to rescore, not both")
        result = rescore(args.predictions, args.data, out=args.out)
        if result["unanswered"]:
            print(f"pocketbert: warning: only {result['count'] - result['unanswered']} of the {result['count']} "
                  f"questions of {args.data} have a prediction in {args.predictions}; the other "
                  f"{result['unanswered']} score 0", file=sys.stderr)
        print(f"{args.predictions}: EM {result['exact_match']:.2f} F1 {result['f1']:.2f} on {result['count']} questions"
              f" ({result['unanswered']} without a prediction score 0; {result['unknown_ids']} ids not in {args.data})")
        if args.out:
            print(f"wrote {args.out}/question_scores.json and {args.out}/rescore.json")
        return 0
    from pocketbert.bench.task_eval import EvalRequest

    check_bench_options(args)
    request = EvalRequest(args.max_seq_len, args.doc_stride, args.max_query_len, args.labels, args.text_column,
                          args.label_column)
    report = evaluate(args.models, args.data, request,
                      out=args.out, stand_in_questions=args.stand_in_questions, verify=not args.no_verify)
    for entry in report["entries"]:
        print(describe(entry))
    if args.out:
        print(f"wrote {args.out}/eval.json and each model's predictions under {args.out}/predictions/")
    return 0
