"""Tune the embedded SmolLM2-135M-Instruct for SST-2 accuracy with MeZO: label-word scoring, no gradients.

MeZO's setting: prompt "<sentence> It was [great|terrible]", k=16 training examples per class; the
objective is the accuracy of the label word with the higher next-token log-probability (piecewise
constant in the weights, so only a zeroth-order method can optimise it directly). Prints validation
accuracy on a fixed sample before and after tuning.

    python examples/sst2_accuracy.py --data FOLDER [--steps 40] [--space prefix]

FOLDER holds the GLUE SST-2 train.tsv and validation.tsv (not shipped; without --data the script says
where to get them). The same run as a config: `blackbox-zo run examples/sst2.yaml`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from blackbox_zo import MeZO
from blackbox_zo.running.trainer import TrainConfig, Trainer

DATA_HELP = """SST-2 not found{where}.
This example needs the GLUE SST-2 files train.tsv and validation.tsv (tab-separated, header
"sentence<TAB>label"). Get them from https://gluebenchmark.com/tasks (SST-2.zip) or with
  python -c "import datasets; d = datasets.load_dataset('glue', 'sst2'); [d[s].to_pandas()[['sentence','label']].to_csv(f'{{s}}.tsv', sep='\\t', index=False) for s in ('train', 'validation')]"
and put both files in one folder, then pass --data FOLDER."""  # noqa: E501 (a command to copy whole)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="folder with the SST-2 train.tsv and validation.tsv (required)")
    p.add_argument("--model", default="embedded", help="'embedded' or a local Hugging Face model folder")
    p.add_argument("--space", default="full", choices=["full", "lora", "prefix"])
    p.add_argument("--include", default=r"^model\.norm\.", help="regex over parameter names (space 'full'; '' = all)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--eps", type=float, default=0.2)
    p.add_argument("--batch", type=int, default=16, help="training examples per step (of 2k)")
    p.add_argument("--k", type=int, default=16, help="training examples per class")
    p.add_argument("--val-size", type=int, default=200, help="validation examples (balanced, fixed seed)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def tuned_space(model, tokenizer, args):
    """(model to evaluate, ParamSpace of the tensors MeZO moves) for --space / --include."""
    from blackbox_zo import ParamSpace
    from blackbox_zo.weights.spaces import lora_space, prefix_space

    if args.space == "prefix":
        return prefix_space(model, tokenizer, num_tokens=5)
    if args.space == "lora":
        return lora_space(model, r=8, alpha=16)
    return model, ParamSpace(model, include=args.include or None)


def tune(model, tokenizer, task: dict, args) -> dict:
    """Before/after validation accuracy of `model` tuned with MeZO on task['train'] (a recipes dict)."""
    from blackbox_zo.lm import TransformersLM

    model, space = tuned_space(model, tokenizer, args)
    lm = TransformersLM(model, tokenizer, batch_size=32)
    opt = MeZO(space, lr=args.lr, eps=args.eps, seed=args.seed, maximize=True)
    trainer = Trainer(lm, opt, task["objective"], task["train"], val_objective=task["val_objective"],
                      config=TrainConfig(steps=args.steps, batch_size=args.batch, eval_every=args.steps,
                                         seed=args.seed, plot=False))
    before = trainer.evaluate(task["val"])
    t0 = time.perf_counter()
    fit = trainer.fit()
    after = trainer.evaluate(task["val"])
    return {"before": before, "after": after, "steps": fit.steps_done, "tuned": space.numel(),
            "train_seconds": time.perf_counter() - t0}


def main(argv=None, model=None, tokenizer=None) -> dict | None:
    """Run the example; pass `model`/`tokenizer` to use another model (the tests pass a tiny one)."""
    args = parse_args(argv)
    if args.data is None or not all((Path(args.data) / f).exists() for f in ("train.tsv", "validation.tsv")):
        print(DATA_HELP.format(where=f" at {Path(args.data).resolve()}" if args.data else " (no --data given)"))
        return None
    from objectives.recipes import classification

    task = classification("sst2", data=args.data, k=args.k, val_size=args.val_size, seed=args.seed)
    if model is None:
        from blackbox_zo.lm import load_model

        model, tokenizer = load_model(args.model)
    print(f"SST-2: {len(task['train'])} training examples (k={args.k} per class), {len(task['val'])} validation")
    print(f"settings: space={args.space} include={args.include} lr={args.lr} eps={args.eps} "
          f"batch={args.batch} steps={args.steps} seed={args.seed}")
    r = tune(model, tokenizer, task, args)
    print(f"tuned {r['tuned']:,} elements, {r['steps']} steps in {r['train_seconds']:.0f} s")
    print(f"validation accuracy: before {r['before']:.3f} -> after {r['after']:.3f}")
    return r


if __name__ == "__main__":
    main()
