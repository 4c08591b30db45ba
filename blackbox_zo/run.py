"""From a validated RunConfig to a finished run: data, model, parameter space, optimizer, trainer, export.

A run directory holds config.json, trajectory.jsonl (seeds and scalars), metrics.jsonl, objective.png and
summary.json; the tuned weights are rebuilt from the base model + trajectory (export, eval, replay).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, load_config
from .mezo import MeZO
from .trainer import TrainConfig, Trainer, value_of

TRAJECTORY = "trajectory.jsonl"


def load_factory(spec: str):
    """Import 'module:function' named by the config (the objective side stays outside the engine)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"objective.factory: cannot import module {module_name!r} ({e})") from e
    if not hasattr(module, attr):
        raise ConfigError(f"objective.factory: module {module_name!r} has no {attr!r}")
    return getattr(module, attr)


def build_task(cfg: RunConfig) -> dict:
    """Call the objective factory: it returns {'train', 'val', 'objective', optional 'val_objective'}."""
    task = load_factory(cfg.objective.factory)(**cfg.objective.args)
    missing = {"train", "objective"} - set(task)
    if missing:
        raise ConfigError(f"objective.factory {cfg.objective.factory} returned no {sorted(missing)}")
    return task


@dataclass
class Loaded:
    model: Any  # the module the objective runs (a peft / prefix wrapper when the space is not "full")
    tokenizer: Any
    space: Any
    lm: Any


def load_tuned(cfg: RunConfig) -> Loaded:
    """Base model + the parameter space the config tunes + the LM wrapper objectives call."""
    from .lm import TransformersLM, load_model
    from .params import ParamSpace

    if cfg.model.backend == "vllm":
        from .backends.vllm_backend import VLLMBackend

        if cfg.space.kind != "full" or cfg.space.include or cfg.space.exclude:
            raise ConfigError("model.backend 'vllm' tunes all weights: use space.kind 'full' without include/exclude")
        if cfg.space.mask_density or cfg.space.blockwise:
            raise ConfigError("model.backend 'vllm' supports neither space.mask_density nor space.blockwise")
        backend = VLLMBackend(cfg.model.name, noise=cfg.space.noise, dtype=cfg.model.dtype)
        return Loaded(None, None, backend, backend)
    model, tok = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.model.device)
    s = cfg.space
    extra = dict(noise=s.noise, mask_density=s.mask_density, blockwise=s.blockwise)
    if s.kind == "lora":
        from .spaces import lora_space

        model, space = lora_space(model, r=s.lora_r, alpha=s.lora_alpha, **extra)
    elif s.kind == "prefix":
        from .spaces import prefix_space

        model, space = prefix_space(model, tok, num_tokens=s.prefix_tokens, **extra)
    else:
        space = ParamSpace(model, include=s.include or None, exclude=s.exclude or None, **extra)
    return Loaded(model, tok, space, TransformersLM(model, tok, batch_size=cfg.model.batch_size))


def make_optimizer(cfg: RunConfig, space, maximize: bool, trajectory: Path | None, resume: bool, compare=None) -> MeZO:
    """The MeZO a config describes: its `optim` section is the Spec, with maximize taken from the objective."""
    spec = dataclasses.replace(cfg.optim, maximize=maximize)
    return MeZO(space, spec=spec, compare=compare, trajectory=trajectory, resume=resume)


def run(config: RunConfig | dict | str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train as configured; returns (and writes) the summary with start/best/final validation values."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if cfg.distributed.workers:  # evaluate on Ray workers; null: in this process
        from .distributed import run_distributed

        return run_distributed(cfg, resume, progress)
    out = Path(cfg.output)
    log = out / TRAJECTORY
    if log.exists() and log.stat().st_size and not resume:
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another output")
    task = build_task(cfg)  # data and objectives are checked before the model is loaded
    loaded = load_tuned(cfg)
    objective = task["objective"]
    opt = make_optimizer(cfg, loaded.space, bool(getattr(objective, "maximize", True)), log, resume)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    t = cfg.train
    trainer = Trainer(loaded.lm, opt, objective, task["train"], val_objective=task.get("val_objective"),
                      val_data=task.get("val"), out_dir=out,
                      config=TrainConfig(t.steps, t.batch_size, t.eval_every, t.patience, t.seed, t.tensorboard, t.plot, progress))
    result = trainer.fit()
    final_score = trainer.evaluate_score() if task.get("val") else None
    final = value_of(final_score) if final_score is not None else None
    opt.close()
    summary = {
        "objective": getattr(objective, "name", "objective"), "maximize": trainer.maximize,
        "val_start": result.start_value, "val_final": final, "val_best": result.best_value,
        "best_step": result.best_step, "steps": result.steps_done, "seconds": round(result.seconds, 1),
        "nonfinite_steps": opt.nonfinite_steps, "tuned_elements": loaded.space.numel(),
    }
    flips = paired_flips(getattr(trainer.start_score, "per_example", None), getattr(final_score, "per_example", None))
    if flips:
        summary["val_flips"] = flips
    (out / "summary.json").write_text(json.dumps(summary, indent=2))  # export reads best_step from it
    summary["final_fingerprint"] = loaded.space.fingerprint()
    if cfg.export and cfg.model.backend == "vllm":
        from safetensors.torch import save_file

        # the engine's own final weights, so `replay --compare` can diff a transformers replay against them
        save_file(loaded.space.state_dict(), str(out / "vllm_final.safetensors"))
    if cfg.export:
        if cfg.model.backend == "transformers" and result.best_step == opt.step_count:
            exported = save_checkpoint(cfg, loaded, out / "model")  # the live weights are the best ones
        else:
            exported = export(out, out / "model", step="best")  # base + trajectory replayed to the best step
        summary["exported"] = str(exported)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def paired_flips(before, after) -> dict | None:
    """For 0/1 per-example scores: examples fixed and broken, and the exact two-sided sign-test p-value.

    Under "no change" each flipped example is fixed or broken with probability 1/2, so
    p = P(|Bin(n, 1/2) - n/2| >= |fixed - n/2|) with n = fixed + broken.
    """
    if not before or not after or len(before) != len(after) or any(v not in (0.0, 1.0) for v in [*before, *after]):
        return None
    fixed = sum(1 for b, a in zip(before, after) if b == 0.0 and a == 1.0)
    broken = sum(1 for b, a in zip(before, after) if b == 1.0 and a == 0.0)
    n = fixed + broken
    tail = min(fixed, broken)
    p = min(1.0, 2 * sum(math.comb(n, k) for k in range(tail + 1)) / 2**n) if n else 1.0
    return {"fixed": fixed, "broken": broken, "sign_test_p": p}


def read_run(run_dir: str | Path) -> tuple[RunConfig, dict]:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.json)")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    return load_config(json.loads((run_dir / "config.json").read_text())), summary


def rebuild(run_dir: str | Path, step: str | int = "best") -> tuple[RunConfig, Loaded, int]:
    """Base model + trajectory replayed to `step` ('best', 'last' or a number): the tuned model, rebuilt."""
    cfg, summary = read_run(run_dir)
    cfg.model.backend = "transformers"  # a vLLM-recorded trajectory replays on transformers (same noise)
    if step == "best":
        steps = summary.get("best_step")
    elif step == "last":
        steps = None
    else:
        steps = int(step)
    loaded = load_tuned(cfg)
    opt = MeZO.replay(loaded.space, Path(run_dir) / TRAJECTORY, steps=steps)
    return cfg, loaded, opt.step_count


def export(run_dir: str | Path, out: str | Path, step: str | int = "best") -> Path:
    """Save the tuned model as a normal Hugging Face checkpoint (safetensors) that plain transformers loads."""
    cfg, loaded, _ = rebuild(run_dir, step)
    return save_checkpoint(cfg, loaded, out)


def save_checkpoint(cfg: RunConfig, loaded: Loaded, out: str | Path) -> Path:
    """Write the model as it is now: full weights, LoRA merged into them, or the prefix tensors alone."""
    out = Path(out)
    model = loaded.model
    if cfg.space.kind == "prefix":  # a prefix is not part of a plain HF checkpoint: save it on its own
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file(loaded.space.state_dict(), str(out / "prefix.safetensors"))
        return out
    if cfg.space.kind == "lora":
        model = model.merge_and_unload()  # fold B A into the base weights: a plain checkpoint
    model.save_pretrained(out, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out)
    return out
