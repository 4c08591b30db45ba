"""Tune the embedded SmolLM2-135M-Instruct so its completions read more positive (VADER compound score).

The recommended recipe for a reward of generated text: steering vectors (a third and two thirds of the way up the
decoder, `bz.steering_space`) tuned with the library defaults, completions decoded greedily. Over all weights one
random direction barely changes a greedy answer; along a steering vector it changes every token's state; and with
sampling, f(theta + eps z) - f(theta - eps z) is mostly sampling noise. Before/after is the mean reward on
held-back prompts.

    python examples/reward_vader.py [--steps 30] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import time

from blackbox_zo import MeZO, steering_space
from blackbox_zo.running.trainer import TrainConfig, Trainer
from objectives import Generation, vader_reward
from objectives.recipes import OPEN_PROMPTS

# the open prompts of the `vader_prompts` config recipe: the first 8 train, the last 4 are held back
TRAIN_PROMPTS, HELD_OUT_PROMPTS = OPEN_PROMPTS[:8], OPEN_PROMPTS[8:]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' or a local Hugging Face model folder")
    p.add_argument("--layers", type=int, nargs="*", default=None,
                   help="decoder layers to steer after (default: a third and two thirds of the way up)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=None, help="default: the library's (scale-free steps)")
    p.add_argument("--eps", type=float, default=None, help="default: the library's (adaptive radius)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (recommended while tuning)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def tune(model, tokenizer, args) -> dict:
    """Mean VADER reward on held-back prompts before and after MeZO steps on the training prompts."""
    from blackbox_zo.lm import TransformersLM

    model, space = steering_space(model, tokenizer, layers=args.layers)  # zero vectors: the model is unchanged
    lm = TransformersLM(model, tokenizer, batch_size=16)
    reward = vader_reward(generation=Generation(max_new_tokens=args.max_new_tokens, temperature=args.temperature))
    train = [{"prompt": p} for p in TRAIN_PROMPTS]
    held = [{"prompt": p} for p in HELD_OUT_PROMPTS]
    given = {k: v for k, v in (("lr", args.lr), ("eps", args.eps)) if v is not None}  # else the Spec defaults
    opt = MeZO(space, seed=args.seed, maximize=True, **given)
    trainer = Trainer(lm, opt, reward, train, config=TrainConfig(
        steps=args.steps, batch_size=len(train), eval_every=args.steps, seed=args.seed, plot=False))
    before = trainer.evaluate(held)
    t0 = time.perf_counter()
    trainer.fit()
    after = trainer.evaluate(held)
    samples = reward.outputs(lm, held, seed=args.seed)
    return {"before": before, "after": after, "train_seconds": time.perf_counter() - t0, "samples": samples,
            "tuned": space.numel()}


def main(argv=None, model=None, tokenizer=None) -> dict:
    """Run the example; pass `model`/`tokenizer` to use another model (the tests pass a tiny one)."""
    from blackbox_zo.lm import load_model

    args = parse_args(argv)
    if model is None:
        model, tokenizer = load_model(args.model)
    print(f"settings: steering vectors after layers {args.layers or 'default'}, lr={args.lr or 'default'} "
          f"eps={args.eps or 'default'} steps={args.steps} max_new_tokens={args.max_new_tokens} "
          f"temperature={args.temperature} seed={args.seed}")
    r = tune(model, tokenizer, args)
    print(f"{args.steps} steps in {r['train_seconds']:.0f} s; tuned completions on held-back prompts:")
    for prompt, text in zip(HELD_OUT_PROMPTS, r["samples"]):
        print(f"  {prompt} {text.strip()!r}")
    print(f"mean VADER compound on held-back prompts: before {r['before']:+.3f} -> after {r['after']:+.3f}")
    return r


if __name__ == "__main__":
    main()
