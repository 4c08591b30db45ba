"""The `blackbox-zo` command: run a config, evaluate or export a run, replay a trajectory, or the demo.

Every command validates its arguments and the config before loading a model or writing a file. A user
error prints one line, `blackbox-zo: error: ...`, and exits 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from blackbox_zo.errors import ObjectiveError
from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.parser import Parser
from blackbox_zo.setup.run_files import SAMPLES
from blackbox_zo.step.trajectory import TrajectoryError

# Errors that mean "the input is wrong" (config, files, objective): one line, exit 2. Anything else: exit 1.
USER_ERRORS = (ConfigError, TrajectoryError, ObjectiveError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError)

DEMO_CONFIG = {
    # The embedded SmolLM2-135M-Instruct, a built-in sentiment task (validation phrases never seen in
    # training), label-word accuracy as the objective: piecewise constant, so there is no gradient.
    "model": {"name": "embedded", "batch_size": 32},
    "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
    "space": {"kind": "full"},
    # the library's defaults (bz.Spec): scale-free sign steps, radius grown on ties (accuracy has plateaus)
    "optim": {"seed": 0},
    "train": {"steps": 50, "batch_size": 32, "eval_every": 25, "seed": 0},
    "output": "runs/demo",
}


PROGRESS_FIELDS = """the progress bar, one tick per step (a step = one update of the weights; eval --step, export
--step, metrics.jsonl, samples.jsonl, summary.json and the plot count updates applied, so step 0 is the
untuned model and the first step's row is step 1):
  obj  the mean of the objective values this step measured on its batch (at theta +- eps z);
       with the pairwise estimator, the mean preference for the + side
  g    the projected gradient: the slope estimated along this step's random direction z,
       (f(theta + eps z) - f(theta - eps z)) / (2 eps) for spsa; 0 means the two sides tied
  val  the validation objective, on the steps that validate (train.eval_every, and the last)"""


def cmd_run(args) -> int:
    from blackbox_zo.setup.config import load_config
    from blackbox_zo.setup.overrides import apply_sets

    data = load_config(args.config).to_dict()  # a bad config fails here, before torch is imported
    data = apply_sets(data, args.set or [])
    if args.output:  # relative to the working folder, as any command-line path
        data["output"] = args.output
    if args.steps is not None:
        data["train"]["steps"] = args.steps
    if args.model:
        data["model"]["name"] = args.model
    if args.workers is not None:  # --workers N overrides the config's distributed.workers (Ray)
        data["distributed"]["workers"] = args.workers
    cfg = load_config(data)  # validated again: --workers 0 or --set train.stepz=3 fail as the config file's would
    if args.quiet:
        quiet_loading()
    from blackbox_zo.running.run import run

    args.run_folder = Path(cfg.output)  # a failure mid-run names what this folder kept (main)
    summary = run(cfg, resume=args.resume, progress=not args.quiet)
    print(report(summary, Path(cfg.output)))
    return 0


def report(summary: dict, out: Path) -> str:
    """What a finished run says: where its files are, then (last, where a reader looks) the validation value
    before -> after with its sign test, and a warning naming the fix when no step moved the weights."""
    def value(v) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    lines = [f"run folder: {out} (summary.json, metrics.jsonl, trajectory.jsonl, objective.png)"]
    if (out / SAMPLES).exists():
        lines.append(f"samples: {out / SAMPLES}")
    if summary.get("exported"):
        lines.append(f"exported model: {summary['exported']}")
    trained_on = summary.get("objective", "objective")
    if summary.get("val_start") is None and summary.get("val_final") is None:
        lines.append(f"{trained_on}: no validation set, so no before -> after; {summary.get('steps')} steps")
    else:
        # summary.json's objective is the training objective and its maximize the validation objective's: a training
        # objective of the other direction (objective.args.train_objective: nll) is not what validation measured
        maximize, config = summary.get("maximize"), read_json(out / "config.json") or {}
        flipped = maximize is not None and trained_maximize(out / "trajectory.jsonl") not in (None, maximize)
        args = config.get("objective", {}).get("args") or {}
        differs = flipped or bool(args.get("train_objective"))
        recipe = str(config.get("objective", {}).get("factory", "")).endswith("recipes:classification")
        metric = args.get("metric", "accuracy" if recipe else None)  # the recipe's default metric
        metric = f"validation {metric}" if isinstance(metric, str) else "validation"
        if summary.get("val_objective"):  # summaries since 0.3 name both objectives and both directions
            flipped = summary.get("train_maximize", maximize) != maximize
            differs = flipped or summary["val_objective"] != trained_on
            metric = f"validation {summary['val_objective']}"
        name = metric if differs else f"{trained_on} (validation)"
        line = (f"{name}: before {value(summary.get('val_start'))} -> after {value(summary.get('val_final'))} (best "
                f"{value(summary.get('val_best'))} at step {summary.get('best_step')}); {summary.get('steps')} steps, "
                f"{summary.get('seconds', 0):.0f} s")
        if differs:
            line += f"; trained on {trained_on}" + (f", {'maximised' if not maximize else 'minimised'}" if flipped else "")
        lines.append(line)
    if "val_flips" in summary:
        f = summary["val_flips"]
        lines.append(f"held-back examples fixed {f['fixed']}, broken {f['broken']}: exact sign test p = "
                     f"{f['sign_test_p']:.2g} (the chance of a split this lopsided if tuning changed nothing)")
    stuck = never_moved(out / "metrics.jsonl", read_json(out / "config.json") or {})
    if stuck:
        lines.append(stuck)
    return "\n".join(lines)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def trained_maximize(trajectory: Path) -> bool | None:
    """Whether the optimizer maximised the training objective, from the trajectory's header (None if unreadable)."""
    try:
        with trajectory.open() as f:
            header = json.loads(f.readline()).get("config", {})
    except (OSError, ValueError, AttributeError):
        return None
    for section in (header.get("spec"), header.get("cma"), header):  # the engine's spec, or CMA's settings
        if isinstance(section, dict) and isinstance(section.get("maximize"), bool):
            return section["maximize"]
    return None


def logged_steps(metrics: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (one per step applied), [] if it has none."""
    try:
        return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def never_moved(metrics: Path, config: dict) -> str | None:
    """A warning when the projected gradient was 0 on every logged step (the weights never moved), with the fix."""
    rows = logged_steps(metrics)
    optim = config.get("optim", {})
    if not rows or optim.get("optimizer", "sgd") == "cma" or any(r.get("projected_grad", 0) != 0 for r in rows):
        return None
    eps = optim.get("eps")
    fixes = [f"a larger optim.eps (this run: {eps:g}; e.g. --set optim.eps={10 * eps:g})" if eps else "a larger optim.eps"]
    if config.get("objective", {}).get("factory", "").endswith(":classification"):
        fixes.append("a smooth train objective (objective.args.train_objective: nll or margin)")
    return (f"warning: the projected gradient was 0 on all {len(rows)} steps: both sides of every step scored the same, "
            f"so the weights never moved. Try {' or '.join(fixes)}, or a batch with examples the model still gets wrong")


def quiet_loading() -> None:
    """--quiet: no progress bars from transformers, huggingface_hub or datasets either (their loading bars).

    The libraries read the environment when imported; those already imported are told directly."""
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ[var] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


def cmd_demo(args) -> int:
    from blackbox_zo.setup.config import load_config

    data = json.loads(json.dumps(DEMO_CONFIG))
    data["output"] = args.output
    if args.steps is not None:
        data["train"]["steps"] = args.steps
    if args.model:
        data["model"]["name"] = args.model
    cfg = load_config(data)
    print("blackbox-zo demo: tune the embedded SmolLM2-135M-Instruct for label-word accuracy on a built-in")
    o = cfg.optim
    print("sentiment task with zeroth-order steps (forward passes only). Settings:",
          f"estimator={o.estimator} rule={o.rule} optimizer={o.optimizer} lr={o.lr:g} eps={o.eps:g} seed={o.seed}")
    from blackbox_zo.running.run import run

    t0 = time.time()
    if args.quiet:
        quiet_loading()
    s = run(cfg, resume=args.resume, progress=not args.quiet)
    print(f"\nvalidation accuracy (held-back phrases): before {s['val_start']:.3f} -> after {s['val_final']:.3f} "
          f"(best {s['val_best']:.3f} at step {s['best_step']}); {s['steps']} steps, {time.time() - t0:.0f} s total")
    if "val_flips" in s:
        f = s["val_flips"]
        print(f"held-back examples fixed {f['fixed']}, broken {f['broken']}: exact sign test p = {f['sign_test_p']:.2g} "
              "(the chance of a split this lopsided if tuning changed nothing)")
    print(f"run directory: {cfg.output} (trajectory.jsonl, metrics.jsonl, start.json, objective.png, summary.json)")
    return 0


def cmd_eval(args) -> int:
    from blackbox_zo.running.artifacts import read_run, rebuild, resolve_step
    from blackbox_zo.setup.assembly import build_task
    from blackbox_zo.weights.seeds import derive_seed

    cfg, summary = read_run(args.run)
    resolve_step(args.run, args.step, summary)  # a bad --step fails before the task and the model are built
    task = build_task(cfg)
    scorer = task["val_traits"]  # of the val_objective, else of the objective
    if not scorer.scores:
        raise ConfigError(f"eval needs an objective that scores: {cfg.objective.factory} returns "
                          f"{scorer.name} (pairwise) and no val_objective")
    data = task.get("val") or task["train"]
    cfg, loaded, steps = rebuild(args.run, args.step)
    seed = derive_seed(cfg.train.seed, "eval")  # the seed the trainer validated with: same value as the run's log
    from blackbox_zo.running.show import eval_report

    line, shown = eval_report(cfg, task, loaded, data, seed, steps, args.run, args.show)  # + text numbers, --show N
    print(json.dumps({"run": str(args.run), "step": steps, "step_requested": str(args.step),
                      "objective": scorer.name, **line}))
    if shown:
        print(shown)
    return 0


def cmd_export(args) -> int:
    from blackbox_zo.running.artifacts import describe_step, export, read_run

    _, summary = read_run(args.run)
    out, steps = export(args.run, args.out, args.step, force=args.force)
    print(f"exported {args.run} at {describe_step(args.step, steps, summary)} to {out}")
    return 0


def cmd_replay(args) -> int:
    from blackbox_zo.running.artifacts import read_run, rebuild

    read_run(args.run)
    compare = Path(args.compare) if args.compare else None
    if compare is not None and not compare.is_dir():
        raise ConfigError(f"--compare {compare} " + ("is not a directory" if compare.exists() else "does not exist"))
    _, loaded, steps = rebuild(args.run, args.step)
    report = {"run": str(args.run), "steps_replayed": steps, "fingerprint": loaded.space.fingerprint()}
    if compare is not None:
        from safetensors.torch import load_file

        other = {}
        for f in sorted(compare.glob("*.safetensors")):
            other.update(load_file(str(f)))
        if not other:
            raise ConfigError(f"--compare {compare} holds no *.safetensors files")
        mine = loaded.space.state_dict()
        shared = [n for n in mine if n in other]
        if not shared:
            raise ConfigError(f"--compare {compare} holds none of the tuned tensors (e.g. {next(iter(mine))})")
        report["max_abs_diff"] = max(float((mine[n] - other[n].float()).abs().max()) for n in shared)
        report["tensors_compared"] = len(shared)
    print(json.dumps(report))
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error instead of one line")
    p = Parser(prog="blackbox-zo", description=__doc__.splitlines()[0], parents=[common])
    from blackbox_zo import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    r = sub.add_parser("run", help="train as a YAML/JSON config says", description="Train as a YAML/JSON config says.",
                       epilog=PROGRESS_FIELDS, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    r.add_argument("config", help="path to a .yaml/.yml/.json run config (see examples/); its relative paths (output, "
                                  "objective.args data/path, the factory's module) mean the config file's folder")
    r.add_argument("--model", help="a local model directory or a hub id (org/name), overriding the config's model.name")
    r.add_argument("--output", help="the run folder, overriding the config's output (relative to the working folder)")
    r.add_argument("--steps", type=int, help="the number of steps, overriding train.steps")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set a dotted config key, the value read as YAML: --set optim.lr=1e-4 --set "
                        "objective.args.k=8 (repeatable; checked like the config file)")
    r.add_argument("--resume", action="store_true", help="continue the run in the config's output directory")
    r.add_argument("--quiet", action="store_true", help="no progress bars (neither ours nor the model loading's)")
    r.add_argument("--workers", type=int, help="evaluate on N Ray workers (sets distributed.workers; needs the ray extra)")
    r.set_defaults(fn=cmd_run)
    d = sub.add_parser("demo", help="tune the embedded model on a built-in task (minutes on a CPU)",
                       description="Tune the embedded SmolLM2-135M for accuracy on a built-in sentiment task.",
                       parents=[common])
    d.add_argument("--output", default="runs/demo", help="run directory (default runs/demo)")
    d.add_argument("--steps", type=int, default=None, help="override the number of steps")
    d.add_argument("--model", help="a local Hugging Face model directory instead of the embedded model")
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    d.add_argument("--quiet", action="store_true", help="no progress bars (neither ours nor the model loading's)")
    d.set_defaults(fn=cmd_demo)
    for name, fn, text in (("eval", cmd_eval, "evaluate a run's validation objective at a step"),
                           ("export", cmd_export, "save a run's tuned model as a Hugging Face checkpoint"),
                           ("replay", cmd_replay, "rebuild a run's weights from base + trajectory, optionally compare")):
        c = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", parents=[common])
        c.add_argument("run", help="run directory (holds config.json and trajectory.jsonl)")
        c.add_argument("--step", default="best",
                       help="'best' (default: the best validation measured), 'last' or a step number (0 = base model)")
        if name == "eval":
            c.add_argument("--show", type=int, default=0, metavar="N",
                           help="also print N held-back answers of the tuned model beside the untuned model's")
        if name == "export":
            c.add_argument("--out", required=True, help="a new (or empty) directory for the checkpoint")
            c.add_argument("--force", action="store_true", help="replace an earlier export in --out (only that)")
        if name == "replay":
            c.add_argument("--compare", help="a checkpoint directory (*.safetensors) to diff the rebuilt weights against")
        c.set_defaults(fn=fn)
    from blackbox_zo.prefer.cli import register as register_prefer  # `prefer CONFIG` / `prefer export RUN` parse their own args

    register_prefer(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("\nblackbox-zo: interrupted; the weights were restored and the trajectory is intact: rerun with --resume",
              file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        user = isinstance(e, USER_ERRORS)
        message = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the message holds
        folder = getattr(args, "run_folder", None)
        kept = len(logged_steps(folder / "metrics.jsonl")) if folder is not None else 0
        if kept and isinstance(e, ObjectiveError):  # a failure mid-run: what the run folder holds, and how to go on
            message += (f" [{folder} keeps steps 1-{kept} (trajectory.jsonl, metrics.jsonl): fix the objective and rerun "
                        f"with --resume to continue from step {kept + 1}]")
        if not user:
            message = f"{type(e).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"blackbox-zo: error: {message}", file=sys.stderr)
        return 2 if user else 1


if __name__ == "__main__":
    sys.exit(main())
