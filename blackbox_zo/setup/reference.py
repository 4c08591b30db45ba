"""pi_0 for a run's objectives: the untuned model that the KL brake (`objective.kl`) and the text report's NLL read.

Why: a reward climbed with no reference drifts into broken text; for steering vectors and LoRA the untuned model
is the same weights with the space switched off (no copy), for a space over the weights a second copy is loaded.
"""

from __future__ import annotations

import copy
from typing import Any

from blackbox_zo.setup.config import ConfigError, RunConfig


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


def attach_reference(cfg: RunConfig, task: dict, loaded: Any) -> None:
    """Give the task's objectives over generated text their pi_0, and the training objective beta = objective.kl.

    With the brake on and no val_objective, validation scores a copy of the objective without the brake, so the
    run reports the reward itself (and the held NLL under pi_0 beside it)."""
    kl = cfg.objective.kl  # range-checked with the config (setup/config.py check_ranges)
    objective = task["objective"]
    if kl and not hasattr(objective, "use_reference"):
        raise ConfigError(f"objective.kl: {getattr(objective, 'name', type(objective).__name__)} takes no KL brake "
                          "(only objectives over generated text: rewards, reward models, judges, BestOfN)")
    if loaded is None or loaded.model is None:  # Ray workers or vLLM hold the weights
        if kl:
            raise ConfigError("objective.kl needs the model in this process (not distributed.workers, not vLLM)")
        return
    users = [o for o in (objective, task.get("val_objective")) if hasattr(o, "use_reference")]
    if not users:
        return
    reference = untuned_reference(cfg, loaded, kl)
    if kl and task.get("val_objective") is None and hasattr(objective, "evaluate"):
        task["val_objective"] = val = copy.copy(objective)  # shares the reward's parts, not its beta
        val.use_reference(reference, 0.0)
    for o in users:
        o.use_reference(reference)
    if kl is not None:
        objective.use_reference(reference, kl)
