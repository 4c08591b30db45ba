"""Tune the embedded SmolLM2-135M-Instruct so its completions read more positive (VADER compound score).

The objective is a reward on sampled text: generate a short completion per prompt, score it with VADER
(in [-1, 1]), average. Each step samples both sides of the +-eps pair with the same seed (the Trainer
derives one per step), so the difference reflects the weights, not the sampling. Before/after is the mean
reward on held-back prompts, 4 samples each, with a fixed seed.

    python examples/reward_vader.py [--steps 15] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import time

from blackbox_zo import MeZO, ParamSpace
from blackbox_zo.running.trainer import TrainConfig, Trainer
from objectives import Generation, vader_reward
from objectives.recipes import OPEN_PROMPTS

# the open prompts of the `vader_prompts` config recipe: the first 8 train, the last 4 are held back
TRAIN_PROMPTS, HELD_OUT_PROMPTS = OPEN_PROMPTS[:8], OPEN_PROMPTS[8:]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' or a local Hugging Face model folder")
    p.add_argument("--include", default=r"^model\.norm\.", help="regex of the tuned tensors ('' = all weights)")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eps", type=float, default=0.2)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--samples", type=int, default=4, help="samples per held-back prompt for before/after")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def tune(lm, args) -> dict:
    """Mean VADER reward on held-back prompts before and after MeZO steps on the training prompts."""
    generation = Generation(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=0.95)
    reward = vader_reward(generation=generation)  # prompts come from each example's "prompt" column
    train = [{"prompt": p} for p in TRAIN_PROMPTS]
    held = [{"prompt": p} for p in HELD_OUT_PROMPTS for _ in range(args.samples)]
    # the recipe examples/README.md measured: MeZO's raw rule at a fixed radius on the final norm
    opt = MeZO(ParamSpace(lm.model, include=args.include or None), lr=args.lr, eps=args.eps,
               seed=args.seed, maximize=True, rule="raw", radius_grow=1.0)
    trainer = Trainer(lm, opt, reward, train, config=TrainConfig(
        steps=args.steps, batch_size=len(train), eval_every=args.steps, seed=args.seed, plot=False))
    before = trainer.evaluate(held)
    t0 = time.perf_counter()
    trainer.fit()
    after = trainer.evaluate(held)
    samples = reward.outputs(lm, held[:: args.samples], seed=args.seed)
    return {"before": before, "after": after, "train_seconds": time.perf_counter() - t0, "samples": samples}


def main(argv=None, model=None, tokenizer=None) -> dict:
    """Run the example; pass `model`/`tokenizer` to use another model (the tests pass a tiny one)."""
    from blackbox_zo.lm import TransformersLM, load_model

    args = parse_args(argv)
    if model is None:
        model, tokenizer = load_model(args.model)
    lm = TransformersLM(model, tokenizer, batch_size=16)
    print(f"settings: include={args.include} lr={args.lr} eps={args.eps} steps={args.steps} "
          f"max_new_tokens={args.max_new_tokens} temperature={args.temperature} seed={args.seed}")
    r = tune(lm, args)
    print(f"{args.steps} steps in {r['train_seconds']:.0f} s; tuned completions on held-back prompts:")
    for prompt, text in zip(HELD_OUT_PROMPTS, r["samples"]):
        print(f"  {prompt} {text.strip()!r}")
    print(f"mean VADER compound on held-back prompts: before {r['before']:+.3f} -> after {r['after']:+.3f}")
    return r


if __name__ == "__main__":
    main()
