"""`pocketbert device list|run|board|web`: measure exported artifacts on phones, boards, the browser and this host."""
from __future__ import annotations

from pathlib import Path

from pocketbert.errors import PocketbertError

# Each subcommand imports what it runs inside its own function, so `pocketbert --help` loads none of the harness.


def parse_runners(values: list[str]) -> dict[str, Path]:
    """--runner FORMAT=PATH (or a bare PATH, taken from its name: benchmark_model -> tflite, else executorch)."""
    from pocketbert.mobile_harness.android import RUNNER_FORMATS

    runners = {}
    for value in values:
        fmt, sep, path = value.partition("=")
        if not sep:
            path = value
            fmt = "tflite" if "benchmark_model" in Path(value).name else "executorch"
        if fmt not in RUNNER_FORMATS.values():
            raise PocketbertError(f"--runner {value}: format must be one of {', '.join(RUNNER_FORMATS.values())}, "
                                  "e.g. --runner tflite=./benchmark_model")
        runners[fmt] = Path(path)
    return runners


def describe_device_eval(entry: dict) -> str:
    """One printed line for a device --eval entry: the task's metrics on the device (EM/F1, accuracy/macro-F1) beside
    this host's and the PyTorch fp32 source's share, or why there are none (bench/task_eval.py words it)."""
    from pocketbert.bench.task_eval import evaluation_of

    return evaluation_of(entry).describe_device(entry)


def list_command(args) -> int:
    """`device list`: one line per target kind's reachable devices, with their state."""
    from pocketbert.mobile_harness.targets import list_targets

    for entry in list_targets():
        print(f"{entry['target']:<36} {entry['state']:<20} {entry['note']}")
    return 0


def run_command(args) -> int:
    """`device run`: measure the artifacts on the target and print one line per row; 1 if any row failed."""
    from pocketbert.mobile_harness.run import run_on_device
    from pocketbert.mobile_harness.targets import parse_target
    from pocketbert.options import above, at_least, check_options
    from pocketbert.results import baseline_ratios, load_results, timing_is_real

    # Before the target is opened (the host target makes a temp folder, ssh connects).
    check_options(at_least("--warmup", args.warmup, 0), at_least("--runs", args.runs, 1),
                  at_least("--threads", args.threads, 1), at_least("--seq-len", args.seq_len, 8),
                  above("--timeout", args.timeout, 0), at_least("--max-questions", args.max_questions, 1))
    target = parse_target(args.target, workdir=args.workdir, timeout=args.timeout, ssh_options=args.ssh_option,
                          remote_python=args.remote_python)
    records = run_on_device(target, args.artifacts, args.out, baseline=args.baseline, warmup=args.warmup,
                            runs=args.runs, threads=args.threads, seq_len=args.seq_len,
                            runners=parse_runners(args.runner), eval_data=args.eval, max_questions=args.max_questions,
                            verify=not args.no_verify)
    for r in records:
        latency = r["latency_ms"] or {}
        timing = f"mean {latency['mean']:.2f} ms, p50 {latency['p50'] or float('nan'):.2f} ms, " \
                 f"load {r['load_ms'] or float('nan'):.1f} ms" if latency else r["reason"]
        if latency and not timing_is_real(r):
            timing = f"emulated timing, not a latency: {timing}"
        if r["status"] != "ok" and latency:
            timing = f"{r['reason']}; {timing}"  # a failed row says why first, whatever it timed
        elif latency and r["reason"]:
            timing = f"{timing}; {r['reason']}"  # an ok row's note: outputs unchecked, or no verdict and why
        print(f"{r['role']:<9} {r['model']} {r['format']}/{r['precision']} L{r['seq_len']} on "
              f"{r['device']['model']}: {r['status']} ({timing})")
    for ratio in baseline_ratios(records):
        print(f"{ratio['candidate']} vs {ratio['baseline']} on this device: {ratio['words']}")
    if args.eval:
        results = load_results(Path(args.out) / "results.json")
        for entry in results["eval"][-len(records):]:
            print(describe_device_eval(entry))
    print(f"results merged into {Path(args.out) / 'results.json'}")
    return 0 if all(r["status"] != "failed" for r in records) else 1


def board_command(args) -> int:
    """`device board up|down|status`: start, stop or describe the emulated arm64 board."""
    from pocketbert.mobile_harness.board import board_down, board_status, board_up

    if args.board_action == "up":
        status = board_up(cpu=args.cpu, with_executorch=args.with_executorch)
    elif args.board_action == "down":
        status = board_down()
    else:
        status = board_status()
    if status["up"]:
        print(f"{status['target']}: up, emulated {status['cpu']}, sshd on 127.0.0.1:{status['port']}, "
              f"runtimes {', '.join(f'{k} {v}' for k, v in status['runtimes'].items())}")
    else:
        print(f"{status['target']}: down ({'built' if status['built'] else 'not built'}; rootfs {status['rootfs']}); "
              "start it with `pocketbert device board up`")
    return 0


def browser_speed_command(args) -> int:
    """`device browser-speed`: the browser beside the native runtimes, written as a table."""
    from pocketbert.mobile_harness.browser import speed_comparison, speed_table
    from pocketbert.options import at_least, check_options

    check_options(at_least("--runs", args.runs, 1), at_least("--warmup", args.warmup, 0),
                  at_least("--rounds", args.rounds, 1))
    table = speed_table(speed_comparison(args.artifacts, args.out, warmup=args.warmup, runs=args.runs,
                                         rounds=args.rounds, seq_len=args.seq_len))
    Path(args.out, "browser_speed.md").write_text(table + "\n")
    print(table)
    return 0


def web_command(args) -> int:
    """`device web`: serve the QA page for one artifact until Ctrl-C."""
    import time

    from pocketbert.mobile_harness.browser import serve_qa_page

    server, url = serve_qa_page(args.artifact, port=args.port, threads=args.threads, max_seq_len=args.max_seq_len)
    print(f"QA page for {args.artifact}: {url}  (cross-origin isolated; Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def register(subparsers) -> None:
    """Add `device` and its actions to the top-level `pocketbert` parser."""
    device = subparsers.add_parser("device", help="measure artifacts on phones (adb, Xcode), ssh boards or this host")
    sub = device.add_subparsers(dest="device_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="show reachable targets")
    listing.set_defaults(func=list_command)

    board = sub.add_parser("board", help="an emulated arm64 Linux board on this machine (qemu-user chroot + sshd)",
                           description="Build once (cached under ~/.cache/pocketbert/board), start and stop an emulated "
                                       "arm64 board reachable as the target board:arm64. Needs root and the Debian "
                                       "packages qemu-user-static, debootstrap, binfmt-support.")
    board.add_argument("board_action", choices=("up", "down", "status"))
    board.add_argument("--cpu", default="cortex-a76", choices=("cortex-a76", "cortex-a72", "neoverse-n1"),
                       help="the emulated core (qemu's default `max` computes int8 wrong)")
    board.add_argument("--with-executorch", action="store_true",
                       help="also install torch + executorch on the board (the aarch64 torch wheel is ~3 GB)")
    board.set_defaults(func=board_command)

    run = sub.add_parser("run", help="push artifacts to a target, run them there, merge rows into OUT/results.json")
    run.add_argument("artifacts", nargs="+", metavar="ARTIFACT_DIR", help="folders written by `pocketbert export`")
    run.add_argument("--target", required=True,
                     help="host | ssh:user@host[:port] | board:arm64 | android:SERIAL | ios:UDID | browser:chromium")
    run.add_argument("--baseline", help="artifact folder of the baseline (BERT-base) measured on the same device")
    run.add_argument("--out", required=True, help="folder whose results.json receives the device rows")
    run.add_argument("--warmup", type=int,
                     help="untimed runs per artifact before the timed ones (default 10; 0 on an emulated target with "
                          "--eval, whose timings are no latencies)")
    run.add_argument("--runs", type=int,
                     help="timed runs per artifact (default 50; 1 on an emulated target with --eval: the one run that "
                          "checks the outputs)")
    run.add_argument("--threads", type=int, help="runtime threads (default: the runtime's own choice)")
    run.add_argument("--seq-len", type=int, help="input length (default 384 where the artifact runs it)")
    run.add_argument("--runner", action="append", default=[], metavar="[FORMAT=]PATH",
                     help="android: NDK-built benchmark_model (tflite) or executor_runner (executorch)")
    run.add_argument("--remote-python", help="ssh: the board's Python with numpy and the runtime (default python3)")
    run.add_argument("--ssh-option", action="append", default=[], metavar="OPTION",
                     help="ssh: extra -o options, e.g. IdentityFile=~/.ssh/board")
    run.add_argument("--workdir", help="folder on the device for bundles (default per target)")
    run.add_argument("--timeout", type=float, default=1800, help="seconds one device command may take (default 1800)")
    run.add_argument("--eval", metavar="DEV_DATA",
                     help="also score each artifact's dev accuracy through the target (host, ssh, board, browser), "
                          "beside the same artifact on this host and its PyTorch source: SQuAD v1.1 JSON for QA "
                          "(EM/F1), labelled text .jsonl/.csv/.tsv for a classifier (accuracy/macro-F1), as "
                          "`pocketbert eval --data` takes it")
    run.add_argument("--max-questions", type=int,
                     help="with --eval: only the first N questions or texts (emulation is slow)")
    run.add_argument("--no-verify", action="store_true",
                     help="push artifacts whose file no longer matches the sha256 their manifest recorded at export "
                          "(by default such a file is refused: it changed or was cut short)")
    run.set_defaults(func=run_command)

    web = sub.add_parser("web", help="serve a QA page that answers in the browser with one artifact (onnx or tflite)",
                         description="Serve mobile_harness/web/qa.html on 127.0.0.1 for one artifact folder: paste a "
                                     "context, ask a question; the page tokenizes, runs the artifact (onnxruntime-web "
                                     "or LiteRT.js, WASM) and decodes the answer span in the browser, as `pocketbert "
                                     "eval` does on the host.")
    web.add_argument("artifact", metavar="ARTIFACT_DIR",
                     help="a folder written by `pocketbert export` (onnx or tflite)")
    web.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free port)")
    web.add_argument("--threads", type=int, help="WASM threads (default: the runtime's own choice)")
    web.add_argument("--max-seq-len", type=int, help="window length, as `pocketbert eval --max-seq-len` (default 384, "
                                                      "or the artifact's longest fixed length below it)")
    web.set_defaults(func=web_command)

    speed = sub.add_parser("browser-speed", help="each artifact in Chromium (1 and 2 WASM threads) beside its native "
                                                 "runtime on this host, interleaved: the browser's speed ratio",
                           description="Time each artifact on this host in its native runtime and in headless Chromium "
                                       "(onnxruntime-web, LiteRT.js) at 1 and 2 WASM threads, artifact by artifact and "
                                       "round by round, so load on a shared machine hits all alike. Rows go to "
                                       "OUT/results.json, the table (best round; browser vs native; 1-thread / "
                                       "2-thread scaling; Chromium's busy threads) to OUT/browser_speed.md. A "
                                       "benchmark: run it on a quiet machine.")
    speed.add_argument("artifacts", nargs="+", metavar="ARTIFACT_DIR", help="onnx or tflite folders from `pocketbert export`")
    speed.add_argument("--out", required=True, help="folder for results.json and browser_speed.md")
    speed.add_argument("--warmup", type=int, default=5, help="untimed runs per measurement (default 5)")
    speed.add_argument("--runs", type=int, default=20, help="timed runs per measurement (default 20)")
    speed.add_argument("--rounds", type=int, default=2, help="rounds over every artifact and place (default 2)")
    speed.add_argument("--seq-len", type=int, help="input length (default 384 where the artifact runs it)")
    speed.set_defaults(func=browser_speed_command)
