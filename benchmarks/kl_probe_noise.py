"""Why the KL brake fails under zeroth-order probes: KL-hat at a probe's two sides, and the step cost of the brake.

Why: on the development prompts beta 0.05 crossed every fluency bound (docs/generation-quality.md). This prints
(1) KL-hat (k3 and k1) of 8 greedy answers with the steering vectors (layers 10, 20) moved by eps z from the start,
where the true drift is zero, and (2) three MeZO steps of the keyword reward with and without the brake:
seconds per step, and each side's braked value, KL-hat and reward.

    OMP_NUM_THREADS=1 python benchmarks/kl_probe_noise.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prompts as prompt_sets  # noqa: E402
import rules  # noqa: E402
from spec_args import tuned_space  # noqa: E402


def main() -> None:
    import torch

    from blackbox_zo import MeZO
    from blackbox_zo.lm import TransformersLM, UntunedLM, load_model
    from objectives import Generation, Reward
    from objectives.kl import kl_hat

    model, tok = load_model()
    lm = TransformersLM(model, tok, batch_size=16)
    model, space, _ = tuned_space(model, tok, argparse.Namespace(steer="10,20", space=[]))
    untuned, prompts, gen = UntunedLM(lm, space), prompt_sets.TRAIN[:8], Generation(max_new_tokens=16)
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(t.shape, generator=g) for t in space.tensors.values()]
    for eps in (1e-3, -1e-3):  # the two sides of one probe at the start (pi_theta = pi_0 in between)
        with torch.no_grad():
            for t, zt in zip(space.tensors.values(), z):
                t.copy_(eps * zt)
        answers = gen.run(lm, prompts, 0)
        k3, k1 = (kl_hat(lm, untuned, prompts, answers, estimator=e) for e in ("k3", "k1"))
        print(f"eps {eps:+g}: k3 per answer {[round(x, 2) for x in k3]} (mean {sum(k3) / 8:.2f}); "
              f"k1 mean {sum(k1) / 8:.2f}", flush=True)
    with torch.no_grad():
        for t in space.tensors.values():
            t.zero_()
    rows = [{"prompt": p} for p in prompts]
    for beta in (0.0, 0.05):
        brake = {"kl": beta, "reference": untuned} if beta else {}
        reward = Reward(rules.personal_reward, generation=gen, **brake)
        opt = MeZO(space, maximize=True, seed=0, lr=6e-4)
        for step in range(3):
            sides, t0 = [], time.perf_counter()

            def value(step=step, sides=sides):
                score = reward.evaluate(lm, rows, seed=step)
                sides.append((round(score.value, 3), score.info.get("kl"), score.info.get("reward")))
                return score.value

            opt.step(value)
            print(f"beta {beta}: step {step} {time.perf_counter() - t0:.1f} s, sides (value, KL-hat, reward) {sides}",
                  flush=True)
        with torch.no_grad():
            for t in space.tensors.values():
                t.zero_()


if __name__ == "__main__":
    main()
