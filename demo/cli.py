"""`pocketbert demo`."""
from __future__ import annotations

# Each subcommand imports the stage code it runs inside its own function, so `pocketbert --help` stays fast.
TASKS = ("qa", "classification")


def register(sub) -> None:
    from pocketbert.demo import classify, pipeline

    p = sub.add_parser("demo", help="the whole path on the embedded default: data, teacher, distill, export, bench, eval",
                       description=f"{pipeline.__doc__}\n--task classification: {classify.__doc__}")
    p.add_argument("--task", choices=TASKS, default=TASKS[0],
                   help="qa: extractive QA on generated BBC questions (default, `make demo`); classification: BBC "
                        "news topics, sized for 15 minutes on 2 cores (`make demo-classify`)")
    p.add_argument("--out", help=f"where every step writes (default {pipeline.OUT} for qa, {classify.OUT} for "
                                 "classification)")
    p.add_argument("--fresh", action="store_true", help="redo every step instead of reusing finished ones")
    p.add_argument("--recipe", choices=pipeline.RECIPES, default=None,
                   help="qa only. qa: QA distillation from a teacher-initialised student (default, sized for 30 minutes "
                        "on 2 cores; docs/demo.md gives the measured time); two-stage: the paper's general triple-loss "
                        "distillation on BBC text first, the better student exported (longer)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pocketbert.demo import classify, pipeline
    from pocketbert.errors import PocketbertError

    if args.task == "classification":
        if args.recipe is not None:
            raise PocketbertError("--recipe applies to the QA demo only; drop it for --task classification")
        print(classify.run_classify_demo(args.out or classify.OUT, args.fresh))
        return 0
    print(pipeline.run_demo(args.out or pipeline.OUT, args.fresh, pipeline.settings_for(args.recipe or pipeline.RECIPES[0])))
    return 0
