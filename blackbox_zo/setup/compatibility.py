"""Every rule between a run's config sections, and between the config (or a built optimizer) and the objective.

Why: one place a maintainer reads to know what combines with what; each rule runs before a model loads or a Ray
worker starts (`check_before_loading` and `build_task`), so a conflict costs a second, not a model load.
"""

from __future__ import annotations

from typing import Any

from blackbox_zo.setup.config import CMA_ONLY, ConfigError, RunConfig
from blackbox_zo.setup.traits import ObjectiveTraits

BATCHING_SPACES = ("lora", "prefix", "steer")  # space.evaluate 'auto' batches these (weights.backend.resolve_evaluate)


def check_config(cfg: RunConfig) -> None:
    """The rules between config sections alone: a run checks them first, DistributedMeZO before Ray starts."""
    o, d, kl = cfg.optim, cfg.distributed, cfg.objective.kl
    if cfg.cma is not None and d.workers:
        raise ConfigError(CMA_ONLY)
    if cfg.cma is None and not o.lr > 0:  # Spec allows lr 0 (a face that measures without moving); a run must move
        raise ConfigError(f"optim.lr must be > 0, got {o.lr!r}")
    if cfg.objective.kl_on not in ("answers", "untuned"):
        raise ConfigError(f"objective.kl_on must be 'answers' or 'untuned', got {cfg.objective.kl_on!r}")
    if kl and (d.workers or cfg.model.backend == "vllm"):
        raise ConfigError("objective.kl needs the model in this process (not distributed.workers, not vLLM)")
    if o.estimator == "pairwise" and d.workers and d.split == "batch":
        raise ConfigError("distributed.split 'batch' does not apply to estimator 'pairwise' (a preference is "
                          "judged over the whole batch): use split 'points'")
    if cfg.cma is None and o.optimizer == "conservative":
        check_conservative(cfg)
    if cfg.train.drift is not None:
        check_drift(cfg)


def check_drift(cfg: RunConfig) -> None:
    """train.drift holds the drift by the anchor's strength: it needs an anchor, and the weights in this process
    (where the exact KL and the anchor are read)."""
    if cfg.cma is not None or not cfg.optim.anchor > 0:
        raise ConfigError(f"train.drift: the drift is held by the anchor's strength; set optim.anchor > 0 as its start "
                          f"(e.g. 16), got {cfg.optim.anchor!r}" + (" (CMA-ES has no anchor)" if cfg.cma else ""))
    if cfg.distributed.workers or cfg.model.backend != "transformers":
        raise ConfigError("train.drift needs the model in this process (model.backend transformers, no "
                          "distributed.workers): the drift is read there")


def check_conservative(cfg: RunConfig) -> None:
    """optim.optimizer 'conservative' evaluates again after the update, at theta itself: one process, in place
    (its estimator, spsa or one_sided, is Spec's own rule)."""
    s = cfg.space
    if cfg.distributed.workers:
        raise ConfigError("distributed runs do not support optimizer 'conservative' (it evaluates again after "
                          "the update): run it in one process (distributed.workers: null)")
    batches = s.evaluate == "batched" or (s.evaluate == "auto" and (s.kind in BATCHING_SPACES or s.noise == "lowrank")
                                          and s.mask_density is None and not s.blockwise)
    if batches and cfg.model.backend == "transformers":
        raise ConfigError(f"optim.optimizer 'conservative' moves the weights to theta +- eps z in place, but space.evaluate "
                          f"{s.evaluate!r} batches this {s.kind} space: set space.evaluate: inplace")


def check_task(cfg: RunConfig, traits: ObjectiveTraits) -> None:
    """The rules between the config and the objective the factory returned (its traits), before any model loads."""
    spec, kl = cfg.objective.factory, cfg.objective.kl
    if kl and not traits.takes_reference:
        raise ConfigError(f"objective.kl: {traits.name} takes no KL brake (only objectives over generated text: "
                          "rewards, reward models, judges, BestOfN)")
    if cfg.cma is not None:
        if traits.pairwise:
            raise ConfigError(f"{CMA_ONLY} ({spec} returns the pairwise objective {traits.name})")
        return
    estimator = cfg.optim.estimator
    if traits.pairwise and estimator != "pairwise":
        raise ConfigError(f"objective.factory {spec} returns a pairwise objective ({traits.name}: it compares two outputs "
                          f"instead of scoring one): set optim.estimator: pairwise (it is {estimator!r})")
    if not traits.pairwise and estimator == "pairwise":
        raise ConfigError(f"optim.estimator: 'pairwise' needs an objective that compares two outputs (a judge or "
                          f"people's preferences), but objective.factory {spec} returns one that scores "
                          f"({traits.name}): use optim.estimator spsa, one_sided or population")


def check_optimizer(traits: ObjectiveTraits, optimizer: Any, validates: bool) -> None:
    """A built optimizer face and the objective agree (pairwise, maximize), and a pairwise objective that is to be
    validated has a val_objective (`validates`: validation data and no val_objective)."""
    if traits.pairwise != optimizer.pairwise:
        raise ValueError(f"objective {traits.name} " + (
            "generates outputs for a pairwise comparison: build the optimizer with estimator='pairwise', compare=judge"
            if traits.pairwise else "returns scores, but the optimizer's estimator is 'pairwise' (it compares outputs)"))
    if not traits.pairwise and optimizer.maximize != traits.maximize:
        raise ValueError(f"optimizer maximize={optimizer.maximize} but objective {traits.name} has maximize={traits.maximize}")
    if validates and traits.pairwise:
        raise ValueError(f"objective {traits.name} has no evaluate(): pass a val_objective "
                         "(e.g. objective.win_rate(base_outputs))")
