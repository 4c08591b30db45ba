"""Preference tuning without RLHF: a rule-based judge picks the better of two completions, MeZO follows it.

Each step generates answers at theta + eps*z and theta - eps*z (same prompts, same sampling seed) and asks
the judge which side is better; the pairwise estimator moves along +z or -z by that preference alone (no
reward values, no reward model, no backprop). The judge here prefers the shorter answer. Before/after:
mean words per answer on held-back prompts, and the judge's win-rate of tuned vs base answers there.

    python examples/preference_judge.py [--steps 15] [--max-new-tokens 24]
"""

from __future__ import annotations

import argparse

from blackbox_zo import MeZO, ParamSpace, derive_seed
from blackbox_zo.running.trainer import TrainConfig, Trainer
from objectives import CallableJudge, Generation, PairwiseObjective

TRAIN_PROMPTS = [
    "What is a good way to relax?", "Why is the sky blue?", "How do I make tea?", "What is a cat?",
    "Name a fun weekend activity.", "How do plants grow?", "What is rain?", "Why do people travel?",
]
HELD_OUT_PROMPTS = ["What is a good breakfast?", "Why do birds sing?", "How do I learn to swim?", "What is music?"]


def shorter(prompt: str, a: str, b: str) -> int:
    """+1 if answer a has fewer words than b, -1 if more, 0 if equally long."""
    na, nb = len(a.split()), len(b.split())
    return (na < nb) - (na > nb)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' or a local Hugging Face model folder")
    p.add_argument("--include", default=r"^model\.norm\.", help="regex of the tuned tensors ('' = all weights)")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--lr", type=float, default=0.2, help="step length along z per unit preference")
    p.add_argument("--eps", type=float, default=0.2)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--samples", type=int, default=3, help="samples per held-back prompt")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def words(texts: list[str]) -> float:
    return sum(len(t.split()) for t in texts) / len(texts)


def tune(lm, args) -> dict:
    """Base vs tuned answers on held-back prompts: mean length and the judge's win-rate of tuned over base."""
    judge = CallableJudge(shorter)
    pref = PairwiseObjective(judge, generation=Generation(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=0.95))
    train = [{"prompt": p} for p in TRAIN_PROMPTS]
    held = [{"prompt": p} for p in HELD_OUT_PROMPTS for _ in range(args.samples)]
    eval_seed = derive_seed(args.seed, "eval")
    base = pref.generate(lm, held, seed=eval_seed)  # win_rate(base) samples with this seed too: only weights differ
    opt = MeZO(ParamSpace(lm.model, include=args.include or None), lr=args.lr, eps=args.eps, seed=args.seed,
               estimator="pairwise", compare=judge)  # a judge is compare(outs_plus, outs_minus) -> [-1, 1]
    # each step: generate at theta +- eps z with one sampling seed, the judge's mean verdict moves along +-z;
    # validation = the judge's win-rate of fresh answers against the base answers (0.5 = no change)
    trainer = Trainer(lm, opt, pref, train, val_objective=pref.win_rate(base), val_data=held, config=TrainConfig(
        steps=args.steps, batch_size=len(train), eval_every=args.steps, seed=args.seed))
    result = trainer.fit()
    for row in result.history:
        print(f"step {row['step']:3d}: preference for +eps side {row['objective']:+.2f}", flush=True)
    tuned = pref.generate(lm, held, seed=eval_seed)
    return {"before": words(base), "after": words(tuned), "win_rate": result.final_value,
            "train_seconds": result.seconds, "base": list(base), "tuned": list(tuned)}


def main(argv=None, model=None, tokenizer=None) -> dict:
    """Run the example; pass `model`/`tokenizer` to use another model (the tests pass a tiny one)."""
    from blackbox_zo.lm import TransformersLM, load_model

    args = parse_args(argv)
    if model is None:
        model, tokenizer = load_model(args.model)
    lm = TransformersLM(model, tokenizer, batch_size=16)
    print(f"settings: judge=shorter include={args.include} lr={args.lr} eps={args.eps} steps={args.steps} "
          f"max_new_tokens={args.max_new_tokens} temperature={args.temperature} seed={args.seed}")
    r = tune(lm, args)
    for prompt, b, t in zip(HELD_OUT_PROMPTS, r["base"][:: args.samples], r["tuned"][:: args.samples]):
        print(f"  {prompt}\n    base:  {b.strip()!r}\n    tuned: {t.strip()!r}")
    print(f"{args.steps} steps in {r['train_seconds']:.0f} s")
    print(f"mean words per answer on held-back prompts: before {r['before']:.1f} -> after {r['after']:.1f}")
    print(f"judge win-rate of tuned vs base answers (ties count half): {r['win_rate']:.2f}")
    return r


if __name__ == "__main__":
    main()
