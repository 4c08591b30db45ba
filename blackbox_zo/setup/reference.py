"""pi_0 for a run's objectives: the untuned model that the KL brake (`objective.kl`) and the text report's NLL read.

Why: a reward climbed with no reference drifts into broken text; for steering vectors and LoRA the untuned model
is the same weights with the space switched off (no copy), for a space over the weights a second copy is loaded.
"""

from __future__ import annotations

import copy
from typing import Any

from blackbox_zo.setup.config import RunConfig


def untuned_reference(cfg: RunConfig, loaded: Any, kl: float | None) -> Any:
    """`UntunedLM` over the loaded space when it can be switched off; else, only when the brake is on, a second
    copy of the model (its full size in memory again: 0.54 GB for the 135M model in float32); else None.
    A prefix space gets that copy too, without the prefix: the prefix starts from text, so the brake then
    measures the drift from the base model (not 0 at the start)."""
    from blackbox_zo.lm import TransformersLM, UntunedLM, load_model

    try:
        return UntunedLM(loaded.lm, loaded.space)
    except (ValueError, TypeError, AttributeError):  # a space over the weights (or a subspace of them)
        if not kl:
            return None
    model, tok = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.model.device)
    return TransformersLM(model, tok, batch_size=cfg.model.batch_size)


def attach_reference(cfg: RunConfig, task: dict, loaded: Any) -> dict:
    """The task whose objectives over generated text (traits.takes_reference) have their pi_0, and the training
    objective beta = objective.kl: a new dict, the given one unchanged (`task` carries its traits: with_traits).

    With the brake on and no val_objective, validation scores a copy of the objective without the brake, so the
    run reports the reward itself (and the held NLL under pi_0 beside it). Whether the config allows the brake here
    is checked before loading (setup/compatibility.py)."""
    kl, objective, traits = cfg.objective.kl, task["objective"], task["traits"]
    if loaded is None or loaded.model is None:  # Ray workers or vLLM hold the weights: no pi_0 in this process
        return task
    val = task.get("val_objective")
    users = [o for o, t in ((objective, traits), (val, task["val_traits"])) if o is not None and t.takes_reference]
    if not users:
        return task
    reference = untuned_reference(cfg, loaded, kl)
    attached = dict(task)
    if kl and val is None and traits.scores:
        attached["val_objective"] = unbraked = copy.copy(objective)  # shares the reward's parts, not its beta
        unbraked.use_reference(reference, 0.0)
    for o in users:
        o.use_reference(reference)
    if kl is not None and traits.takes_reference:
        objective.use_reference(reference, kl, cfg.objective.kl_on)
    return attached
