"""`pocketbert device list|run`: measure exported artifacts on phones, boards and this host."""
from __future__ import annotations

import argparse
from pathlib import Path

from pocketbert.errors import PocketbertError


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
    where = entry["device"]["target"]
    if entry["status"] != "ok":
        return f"eval {entry['model']} {entry['format']}/{entry['precision']} on {where}: {entry['reason']}"
    host = entry["host"] or {}
    beside = f"; on this host EM {host['exact_match']:.2f} F1 {host['f1']:.2f}" if "f1" in host else \
        f"; not on this host ({host.get('reason')})"
    return (f"eval {entry['model']} {entry['format']}/{entry['precision']} on {where}: EM {entry['exact_match']:.2f} "
            f"F1 {entry['f1']:.2f} on {entry['count']} questions{beside}")


def list_command(args) -> int:
    from pocketbert.mobile_harness.targets import list_targets

    for entry in list_targets():
        print(f"{entry['target']:<36} {entry['state']:<20} {entry['note']}")
    return 0


def run_command(args) -> int:
    from pocketbert.results import baseline_ratios, load_results, timing_is_real
    from pocketbert.mobile_harness.run import run_on_device
    from pocketbert.mobile_harness.targets import parse_target

    target = parse_target(args.target, workdir=args.workdir, timeout=args.timeout, ssh_options=args.ssh_option,
                          remote_python=args.remote_python)
    records = run_on_device(target, args.artifacts, args.out, baseline=args.baseline, warmup=args.warmup,
                            runs=args.runs, threads=args.threads, seq_len=args.seq_len,
                            runners=parse_runners(args.runner), eval_data=args.eval, max_questions=args.max_questions)
    for r in records:
        latency = r["latency_ms"] or {}
        timing = f"mean {latency['mean']:.2f} ms, p50 {latency['p50'] or float('nan'):.2f} ms, " \
                 f"load {r['load_ms'] or float('nan'):.1f} ms" if latency else r["reason"]
        if latency and not timing_is_real(r):
            timing = f"emulated timing, not a latency: {timing}"
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


def register(subparsers) -> None:
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

    run = sub.add_parser("run", help="push artifacts to a target, run them there, merge rows into OUT/results.json",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("artifacts", nargs="+", metavar="ARTIFACT_DIR", help="folders written by `pocketbert export`")
    run.add_argument("--target", required=True,
                     help="host | ssh:user@host[:port] | board:arm64 | android:SERIAL | ios:UDID")
    run.add_argument("--baseline", help="artifact folder of the baseline (BERT-base) measured on the same device")
    run.add_argument("--out", required=True, help="folder whose results.json receives the device rows")
    run.add_argument("--warmup", type=int, default=10)
    run.add_argument("--runs", type=int, default=50)
    run.add_argument("--threads", type=int, help="runtime threads (default: the runtime's own choice)")
    run.add_argument("--seq-len", type=int, help="input length (default 384 where the artifact runs it)")
    run.add_argument("--runner", action="append", default=[], metavar="[FORMAT=]PATH",
                     help="android: NDK-built benchmark_model (tflite) or executor_runner (executorch)")
    run.add_argument("--remote-python", help="ssh: the board's Python with numpy and the runtime (default python3)")
    run.add_argument("--ssh-option", action="append", default=[], metavar="OPTION",
                     help="ssh: extra -o options, e.g. IdentityFile=~/.ssh/board")
    run.add_argument("--workdir", help="folder on the device for bundles (default per target)")
    run.add_argument("--timeout", type=float, default=1800, help="seconds one device command may take")
    run.add_argument("--eval", metavar="DEV.json",
                     help="also score SQuAD v1.1 EM/F1 through each artifact on the target (host, ssh, board), "
                          "beside the same artifact's on this host")
    run.add_argument("--max-questions", type=int, help="with --eval: only the first N questions (emulation is slow)")
    run.set_defaults(func=run_command)
