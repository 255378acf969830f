"""`pocketbert demo`."""
from __future__ import annotations

# Each subcommand imports the stage code it runs inside its own function, so `pocketbert --help` stays fast.


def register(sub) -> None:
    from pocketbert.demo import pipeline

    p = sub.add_parser("demo", help="the whole path on the embedded default: data, teacher, distill, export, bench, eval",
                       description=pipeline.__doc__)
    p.add_argument("--out", default=str(pipeline.OUT), help="where every step writes (default runs/demo)")
    p.add_argument("--fresh", action="store_true", help="redo every step instead of reusing finished ones")
    p.add_argument("--recipe", choices=pipeline.RECIPES, default=pipeline.RECIPES[0],
                   help="qa: QA distillation from a teacher-initialised student (default, sized for 30 minutes on "
                        "2 cores; README gives the measured time); two-stage: the paper's general triple-loss "
                        "distillation on BBC text first, the better student exported (longer: see README)")
    p.set_defaults(func=lambda args: print(pipeline.run_demo(args.out, args.fresh, pipeline.settings_for(args.recipe))) or 0)
