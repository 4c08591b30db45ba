"""The zeroth-order recipes the frontier search compares on the dev prompts: each a run config's sections.

Why: a recipe is what a user writes in a config, so each is a dict of config sections, run by `blackbox_zo`'s
own `run`; the search budget (every recipe, one seed, the same wall time, dev prompts only) is fixed here.
"""

from __future__ import annotations

STEER = {"kind": "steer", "steer_layers": [10, 20]}
LORA = {"kind": "lora", "lora_r": 4, "lora_alpha": 8}

# name -> (config sections, validation every N steps: about 12 checkpoints in 300 s at its step time on one loaded thread)
RECIPES: dict[str, tuple[dict, int]] = {
    # the recipe before the frontier issue: steering, lr 6e-4, anchor 400 (lr x lambda = 0.24 a step)
    "steer_anchor400": ({"space": STEER, "optim": {"lr": 6e-4, "anchor": 400}}, 5),
    # weaker anchors inside the lr x lambda 1e-3..1e-2 per step
    "steer_anchor16": ({"space": STEER, "optim": {"lr": 6e-4, "anchor": 16}}, 5),
    "steer_anchor4": ({"space": STEER, "optim": {"lr": 6e-4, "anchor": 4}}, 5),
    "steer_free": ({"space": STEER, "optim": {"lr": 6e-4}}, 5),
    # an input-dependent space: LoRA r 4 on every linear layer
    "lora4": ({"space": LORA, "optim": {"lr": 3e-4}}, 5),
    "lora4_anchor8": ({"space": LORA, "optim": {"lr": 3e-4, "anchor": 8}}, 5),
    # ES at scale in the steering space: an antithetic population of 8 directions, z-scored over one shared batch
    "steer_pop8": ({"space": STEER, "optim": {"estimator": "population", "n": 8, "lr": 6e-4}}, 1),
    "lora4_pop8": ({"space": LORA, "optim": {"estimator": "population", "n": 8, "lr": 3e-4}}, 1),
    # the fixed-continuation KL (objective.kl_on: untuned): beta x exact KL on pi_0's own answers, a Fisher anchor
    "steer_klu2": ({"space": STEER, "optim": {"lr": 6e-4}, "objective": {"kl": 2.0, "kl_on": "untuned"}}, 5),
    "steer_klu8": ({"space": STEER, "optim": {"lr": 6e-4}, "objective": {"kl": 8.0, "kl_on": "untuned"}}, 5),
    "steer_pop8_klu2": ({"space": STEER, "optim": {"estimator": "population", "n": 8, "lr": 6e-4},
                         "objective": {"kl": 2.0, "kl_on": "untuned"}}, 1),
    # smaller steps in the steering space: more checkpoints at low drift
    "steer_lr2e-4": ({"space": STEER, "optim": {"lr": 2e-4}}, 5),
    "steer_lr1e-4": ({"space": STEER, "optim": {"lr": 1e-4}}, 5),
    "steer_lr5e-5": ({"space": STEER, "optim": {"lr": 5e-5}}, 5),
    # the chosen recipe with train.drift holding 0.1 nats/token through the anchor (checked on dev after the choice)
    "steer_lr2e-4_drift0.1": ({"space": STEER, "optim": {"lr": 2e-4, "anchor": 4},
                               "train": {"drift": {"kl": 0.1}}}, 5),
}

SEARCH_BUDGET = ("steer_free, steer_anchor16, steer_klu2, steer_klu8 (cut after 10 steps), steer_pop8_klu2, "
                 "steer_lr1e-4, steer_lr2e-4; GRPO beta 0 and 0.04 at lr 1e-5, beta 0 at lr 3e-6: seed 0, 300 s of "
                 "training each, VADER on the 32 dev prompts, one or two lanes of one thread on a 2-core CPU")
# the rule, fixed before any held-back read: the recipe whose dev gains at KL <= 0.05, 0.1 and 0.2 have the highest
# mean. steer_lr2e-4: +0.084 / +0.084 / +0.206 (mean 0.125); steer_pop8_klu2 +0.122 at all three (6 steps in 300 s,
# KL 0.027 at the end); steer_lr1e-4 +0.064 / +0.079 / +0.079; steer_anchor16 0 / 0 / +0.039; steer_free 0 / 0 / 0
# (KL 0.20 after 5 steps); GRPO lr 1e-5 +0.158 at all three (beta 0 and 0.04 alike up to step 5), lr 3e-6 +0.030
CHOSEN = "steer_lr2e-4"
