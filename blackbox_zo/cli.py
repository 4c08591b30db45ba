"""The `blackbox-zo` command: run a config, evaluate or export a run, replay a trajectory, or the demo.

Every command validates its arguments and the config before loading a model or writing a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError

DEMO_CONFIG = {
    # The embedded SmolLM2-135M-Instruct, a built-in sentiment task (validation phrases never seen in
    # training), label-word accuracy as the objective: piecewise constant, so there is no gradient.
    "model": {"name": "embedded", "batch_size": 32},
    "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
    "space": {"kind": "full"},
    "optim": {"lr": 2e-5, "eps": 1e-3, "seed": 0, "optimizer": "sgd"},
    "train": {"steps": 50, "batch_size": 32, "eval_every": 25, "seed": 0},
    "output": "runs/demo",
}


def cmd_run(args) -> int:
    from .run import run

    summary = run(args.config, resume=args.resume, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args) -> int:
    from .config import load_config
    from .run import run

    data = json.loads(json.dumps(DEMO_CONFIG))
    data["output"] = args.output
    if args.steps is not None:
        data["train"]["steps"] = args.steps
    cfg = load_config(data)
    print("blackbox-zo demo: tune the embedded SmolLM2-135M-Instruct for label-word accuracy on a built-in")
    print("sentiment task with zeroth-order steps (forward passes only). Settings:", json.dumps(data["optim"]))
    t0 = time.time()
    s = run(cfg, resume=args.resume, progress=not args.quiet)
    print(f"\nvalidation accuracy (held-back phrases): before {s['val_start']:.3f} -> after {s['val_final']:.3f} "
          f"(best {s['val_best']:.3f} at step {s['best_step']}); {s['steps']} steps, {time.time() - t0:.0f} s total")
    if "val_flips" in s:
        f = s["val_flips"]
        print(f"held-back examples fixed {f['fixed']}, broken {f['broken']}: exact sign test p = {f['sign_test_p']:.2g} "
              "(the chance of a split this lopsided if tuning changed nothing)")
    print(f"run directory: {cfg.output} (trajectory.jsonl, metrics.jsonl, objective.png, summary.json)")
    return 0


def cmd_eval(args) -> int:
    from .run import build_task, rebuild
    from .trainer import value_of

    cfg, loaded, steps = rebuild(args.run, args.step)
    task = build_task(cfg)
    objective = task.get("val_objective") or task["objective"]
    data = task.get("val") or task["train"]
    value = value_of(objective.evaluate(loaded.lm, data, seed=0))
    print(json.dumps({"run": str(args.run), "step": steps, "objective": getattr(objective, "name", "?"), "value": value}))
    return 0


def cmd_export(args) -> int:
    from .run import export

    out = export(args.run, args.out, args.step)
    print(f"exported {args.run} (step {args.step}) to {out}")
    return 0


def cmd_replay(args) -> int:
    import torch

    from .run import rebuild

    cfg, loaded, steps = rebuild(args.run, args.step)
    report = {"run": str(args.run), "steps_replayed": steps, "fingerprint": loaded.space.fingerprint()}
    if args.compare:
        from safetensors.torch import load_file

        other = {}
        for f in sorted(Path(args.compare).glob("*.safetensors")):
            other.update(load_file(str(f)))
        mine = loaded.space.state_dict()
        shared = [n for n in mine if n in other]
        if not shared:
            raise ConfigError(f"{args.compare} holds none of the tuned tensors")
        report["max_abs_diff"] = max(float((mine[n] - other[n].float()).abs().max()) for n in shared)
        report["tensors_compared"] = len(shared)
    print(json.dumps(report))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blackbox-zo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train as a YAML/JSON config says", description="Train as a YAML/JSON config says.")
    r.add_argument("config", help="path to a .yaml/.yml/.json run config (see examples/)")
    r.add_argument("--resume", action="store_true", help="continue the run in the config's output directory")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_run)
    d = sub.add_parser("demo", help="tune the embedded model on a built-in task (minutes on a CPU)",
                       description="Tune the embedded SmolLM2-135M for accuracy on a built-in sentiment task.")
    d.add_argument("--output", default="runs/demo", help="run directory (default runs/demo)")
    d.add_argument("--steps", type=int, default=None, help="override the number of steps")
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(fn=cmd_demo)
    for name, fn, text in (("eval", cmd_eval, "evaluate a run's validation objective at a step"),
                           ("export", cmd_export, "save a run's tuned model as a Hugging Face checkpoint"),
                           ("replay", cmd_replay, "rebuild a run's weights from base + trajectory, optionally compare")):
        c = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        c.add_argument("run", help="run directory (holds config.json and trajectory.jsonl)")
        c.add_argument("--step", default="best", help="'best' (default), 'last' or a step number")
        if name == "export":
            c.add_argument("--out", required=True, help="directory for the checkpoint")
        if name == "replay":
            c.add_argument("--compare", help="a checkpoint directory (*.safetensors) to diff the rebuilt weights against")
        c.set_defaults(fn=fn)
    from .prefer.cli import register as register_prefer  # `prefer CONFIG` / `prefer export RUN` parse their own args

    register_prefer(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"blackbox-zo: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nblackbox-zo: interrupted; the weights were restored and the trajectory is intact: rerun with --resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
