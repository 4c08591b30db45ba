"""Step rules, radius control and tuned spaces compared at an equal number of objective evaluations (issue 13).

Why: to find, by measurement on the embedded SmolLM2-135M, which update rule, radius control and tuned
space make piecewise-constant accuracy, generated-text rewards and judge preferences go up in a few CPU
minutes. Every step runs on the library's engine (`blackbox_zo.MeZO` with the `Spec` printed in each row),
so a finding here is a finding about the library. Each run appends one JSON line to --out (default
benchmarks/results/recipe_search.jsonl) with the exact command, every step's values, radius and update.
Rows written before the port (no "engine" key) came from a prototype step loop with its own tie rule
(every direction tied) and a 64 x eps radius cap; they are kept as the history QUALITY.md cites.

Rules (`--rule`), per step n directions z_i (`--n`), both sides theta +- eps_t z_i, maximising f:
  mezo  Spec(rule="raw", lr=--lr): MeZO's projected gradient, theta += lr (1/n) sum_i (f_i+ - f_i-)/(2 eps_t) z_i
  sf    Spec(rule="normalized", lr=--lr-rel * --eps0): coefficients / (n rms), so n=1 steps lr * sign(f+ - f-) z
        and the step follows the radius (lr_rel * eps_t); preferences (pref) run the pairwise estimator.
  `--grow G` (>1) turns on the engine's radius control (radius_grow=G, radius_shrink=--shrink,
  radius_max=--eps-max-mult, default Spec's): eps_t grows after a step where half the directions or more tied.

Spaces (`--space`): all (every weight), norms (every RMSNorm weight), lora (r=8, q/v, blackbox_zo.weights.spaces),
lowrank (ParamSpace(noise="lowrank<r>"): every matrix moves along a rank-r direction; vectors dense).

Objectives (`--objective`): acc (SST-2 k=16 label-word accuracy on the 32 training sentences; scored
before/after on 200 balanced sentences of DATA/validation.tsv), personal (benchmarks.rules keyword reward),
vader (VADER positivity), pref (benchmarks.rules plain-words judge; win-rate of tuned vs base on the dev
prompts, sign test). Generated objectives tune on benchmarks.prompts.TRAIN and score on .DEV (greedy).

    OMP_NUM_THREADS=1 python benchmarks/recipe_search.py --objective acc --data DATA --rule sf --grow 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import prompts as prompt_sets  # noqa: E402
import rules  # noqa: E402
import torch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objective", required=True, choices=["acc", "nll", "personal", "vader", "pref"])
    p.add_argument("--data", help="folder with train.tsv and validation.tsv (objective acc/nll)")
    p.add_argument("--space", default="all", choices=["all", "norms", "lora", "lowrank"])
    p.add_argument("--rank", type=int, default=1, help="rank of lowrank directions")
    p.add_argument("--rule", default="sf", choices=["mezo", "sf"])
    p.add_argument("--n", type=int, default=1, help="directions per step")
    p.add_argument("--lr", type=float, default=2e-5, help="mezo rule")
    p.add_argument("--lr-rel", type=float, default=0.3, help="sf rule: step length as a fraction of eps")
    p.add_argument("--eps0", type=float, default=1e-3)
    p.add_argument("--grow", type=float, default=1.0, help=">1 turns on the engine's adaptive radius (radius_grow)")
    p.add_argument("--shrink", type=float, default=0.9)
    p.add_argument("--eps-max-mult", type=float, default=None, help="radius cap in units of eps0 (default: Spec's radius_max)")
    p.add_argument("--evals", type=int, default=60, help="objective evaluations for training (steps = evals // 2n)")
    p.add_argument("--batch", type=int, default=32, help="examples (acc) / prompts (generation) per evaluation")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.7, help="sampling during tuning (seeded, shared by all sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=200)
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(common.RESULTS_DIR / "recipe_search.jsonl"))
    return p.parse_args(argv)


# --- spaces ----------------------------------------------------------------------------------------
def build(args):
    """(model for evaluation, the library backend of tuned tensors, tokenizer)."""
    from blackbox_zo import ParamSpace
    from blackbox_zo.lm import load_model

    model, tok = load_model()
    if args.space == "lora":
        from blackbox_zo.weights.spaces import lora_space

        model, space = lora_space(model, r=8, alpha=16)
    elif args.space == "norms":
        space = ParamSpace(model, include=r"norm")
    elif args.space == "lowrank":
        space = ParamSpace(model, noise=f"lowrank{args.rank}")
    else:
        space = ParamSpace(model)
    return model, space, tok


# --- objectives ------------------------------------------------------------------------------------
class Problem:
    """f(step) on the training side, and the held-back measurement before/after tuning."""

    def __init__(self, args, lm):
        from objectives import CallableJudge, Generation, PairwiseObjective
        from objectives.rewards import Reward, VaderPositivity

        self.args, self.lm = args, lm
        self.kind = args.objective
        self.pairwise = self.kind == "pref"
        gen = Generation(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        self.greedy = Generation(max_new_tokens=args.max_new_tokens, temperature=0.0)
        if self.kind in ("acc", "nll"):
            from objectives.recipes import classification

            if not args.data:
                raise SystemExit("--data DATA (folder with train.tsv and validation.tsv) is needed for acc/nll")
            task = classification(task="sst2", data=args.data, k=16, val_size=args.val_size, seed=args.seed,
                                  train_objective="nll" if self.kind == "nll" else None)
            task["val"] = classification(task="sst2", data=args.data, k=1, val_size=args.val_size, seed=0)["val"]
            self.task = task
            self.train = task["train"]
        else:
            self.train = [{"prompt": p} for p in prompt_sets.TRAIN]
            self.dev = [{"prompt": p} for p in prompt_sets.DEV]
            fn = {"personal": rules.personal_reward, "vader": VaderPositivity(), "pref": None}[self.kind]
            if fn is not None:
                self.reward = Reward(fn, generation=gen, name=self.kind)
                self.dev_reward = Reward(fn, generation=self.greedy, name=self.kind)
            else:
                self.judge = CallableJudge(rules.plain_words_judge)
                self.pref = PairwiseObjective(self.judge, generation=gen)

    def batch(self, t: int):
        from blackbox_zo.running.trainer import batch_for_step
        from blackbox_zo.weights.noise import derive_seed

        return batch_for_step(self.train, self.args.batch, self.args.seed, t), derive_seed(self.args.seed, "sample", t)

    def f(self, batch, sample_seed):
        """The value at the current weights (a float), or the generations for a preference."""
        if self.kind == "acc":
            return self.task["objective"].evaluate(self.lm, batch).value
        if self.kind == "nll":
            return -self.task["objective"].evaluate(self.lm, batch).value  # maximise -NLL
        if self.pairwise:
            return self.pref.generate(self.lm, batch, sample_seed)
        return self.reward.evaluate(self.lm, batch, seed=sample_seed).value

    def compare(self, batch, plus, minus) -> float:
        return self.pref.compare(batch, plus, minus)

    def measure(self, base_outputs=None) -> dict:
        """Held-back numbers at the current weights."""
        if self.kind in ("acc", "nll"):
            val = self.task["val_objective"]
            return {"dev_acc": val.evaluate(self.lm, self.task["val"]).value,
                    "train_acc": val.evaluate(self.lm, self.train).value}
        if not self.pairwise:
            s = self.dev_reward.evaluate(self.lm, self.dev)
            return {"dev_reward": s.value, "sample": self.dev_reward.outputs(self.lm, self.dev[:2])}
        outs = self.greedy.run(self.lm, [ex["prompt"] for ex in self.dev])
        out = {"outputs": outs, "mean_word_length": sum(min(rules.mean_word_length(o), 20) for o in outs) / len(outs)}
        if base_outputs is not None:
            from scipy.stats import binomtest

            v = [rules.plain_words_judge("", a, b) for a, b in zip(outs, base_outputs)]
            wins, losses = v.count(1), v.count(-1)
            out.update(wins=wins, losses=losses, ties=v.count(0),
                       win_rate=wins / max(1, wins + losses),
                       p_value=binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0)
        return out


# --- the step: the library's engine -------------------------------------------------------------------
def spec(args):
    """The Spec a rule names: mezo = the raw projected gradient, sf = the normalized (sign for n=1) step."""
    from blackbox_zo import Spec

    radius = {"radius_grow": args.grow, "radius_shrink": args.shrink if args.grow > 1 else 1.0}
    if args.eps_max_mult is not None:
        radius["radius_max"] = args.eps_max_mult
    rule = {"rule": "raw", "lr": args.lr} if args.rule == "mezo" else {"rule": "normalized", "lr": args.lr_rel * args.eps0}
    estimator = "pairwise" if args.objective == "pref" else "spsa"
    return Spec(seed=args.seed, maximize=True, estimator=estimator, eps=args.eps0, n=args.n, **radius, **rule)


def run(args) -> dict:
    from blackbox_zo import MeZO
    from blackbox_zo.lm import TransformersLM

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    model, space, tok = build(args)
    lm = TransformersLM(model, tok, batch_size=max(args.batch, 16))
    prob = Problem(args, lm)
    t0 = time.perf_counter()
    before = prob.measure()
    base_outputs = before.get("outputs")
    measure_s = time.perf_counter() - t0
    current = {}  # the batch and sampling seed of the step being taken

    def closure():
        return prob.f(*current["batch"])

    compare = (lambda plus, minus: prob.compare(current["batch"][0], plus, minus)) if prob.pairwise else None
    opt = MeZO(space, spec=spec(args), compare=compare)
    steps = max(1, args.evals // (2 * args.n))
    log = []
    t_train = time.perf_counter()
    for t in range(steps):
        current["batch"] = prob.batch(t)
        opt.step(closure)
        r = opt.last
        tied = opt.engine.estimator.tied(r.values) >= 0.5  # the engine's tie rule: half the directions or more
        log.append({"t": t, "eps": r.eps, "values": r.values, "grad": r.grad, "update": r.update, "tied": tied,
                    "s": round(time.perf_counter() - t_train, 1)})
        print(json.dumps({"t": t, "eps": round(r.eps, 6), "values": r.values, "s": log[-1]["s"]}), file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t_train
    after = prob.measure(base_outputs)
    row = {"engine": "blackbox_zo.MeZO", "spec": opt.spec.to_dict(),
           "objective": args.objective, "space": args.space, "rule": args.rule, "n": args.n,
           "lr": args.lr if args.rule == "mezo" else None, "lr_rel": args.lr_rel if args.rule == "sf" else None,
           "eps0": args.eps0, "grow": args.grow, "shrink": args.shrink, "eps_max_mult": opt.spec.radius_max,
           "rank": args.rank if args.space == "lowrank" else None, "evals": 2 * args.n * steps, "steps": steps,
           "seed": args.seed, "tag": args.tag, "numel": space.numel(),
           "before": {k: v for k, v in before.items() if k != "outputs"},
           "after": {k: v for k, v in after.items() if k != "outputs"},
           "ties": sum(r["tied"] for r in log), "eps_last": opt.engine.eps, "train_s": round(train_s, 1),
           "measure_s": round(measure_s, 1), "total_s": round(time.perf_counter() - t_start, 1),
           "loadavg": [round(x, 2) for x in os.getloadavg()], "git": common.git_commit(),
           "command": "OMP_NUM_THREADS=1 python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
           "log": log}
    if base_outputs is not None:
        row["outputs"] = {"base": base_outputs[:4], "tuned": after["outputs"][:4]}
    return row


def headline(row: dict) -> str:
    b, a = row["before"], row["after"]
    key = next(k for k in ("dev_acc", "dev_reward", "win_rate") if k in a)
    start = b.get(key, 0.5)
    extra = f" W/L/T {a['wins']}/{a['losses']}/{a['ties']} p={a['p_value']:.3g}" if key == "win_rate" else ""
    if key == "dev_acc":
        extra = f" train {b['train_acc']:.3f}->{a['train_acc']:.3f}"
    return (f"{row['objective']} {row['space']} {row['rule']} n={row['n']} lr={row['lr']} lr_rel={row['lr_rel']} "
            f"eps0={row['eps0']} grow={row['grow']} shrink={row['shrink']}: {key} {start:.3f} -> {a[key]:.3f}{extra} "
            f"ties {row['ties']}/{row['steps']} eps_last {row['eps_last']:.3g} train {row['train_s']:.0f}s")


def main(argv=None) -> dict:
    args = parse_args(argv)
    row = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(headline(row), flush=True)
    return row


if __name__ == "__main__":
    main()
