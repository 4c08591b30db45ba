"""From a validated RunConfig to a finished run: data, model, parameter space, optimizer, trainer, export.

A run directory holds config.json, trajectory.jsonl (seeds and scalars), metrics.jsonl, start.json,
objective.png and summary.json; the tuned weights are rebuilt from the base model + trajectory (export, eval, replay).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, load_config
from .mezo import MeZO
from .trainer import Trainer, compares_outputs
from .trajectory import Trajectory

TRAJECTORY = "trajectory.jsonl"
# What a factory may raise for bad input (a missing file, a bad row, an unknown task): reported as config errors.
FACTORY_INPUT_ERRORS = (OSError, ValueError, KeyError)


def load_factory(spec: str):
    """Import 'module:function' named by the config (the objective side stays outside the engine).

    The working folder is searched first, as `python -m` does, so `factory: mymodule:fn` finds ./mymodule.py
    from the installed `blackbox-zo` script too.
    """
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"objective.factory: cannot import module {module_name!r} ({e})") from e
    if not callable(getattr(module, attr, None)):
        raise ConfigError(f"objective.factory: module {module_name!r} has no function {attr!r}")
    return getattr(module, attr)


def check_factory_args(factory, spec: str, args: dict) -> None:
    """Name a key of objective.args that the factory does not take, like any other unknown config key."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(args) - set(takes))
    if unknown:
        raise ConfigError(f"unknown key objective.args.{unknown[0]}: {spec} takes {', '.join(takes) or 'no arguments'}")
    missing = [n for n, p in params.items() if p.default is p.empty and n in takes and n not in args]
    if missing:
        raise ConfigError(f"missing key objective.args.{missing[0]} (needed by {spec})")


def build_task(cfg: RunConfig) -> dict:
    """Call the objective factory: it returns {'train', 'val', 'objective', optional 'val_objective'}."""
    spec, args = cfg.objective.factory, cfg.objective.args
    factory = load_factory(spec)
    check_factory_args(factory, spec, args)
    try:
        task = factory(**args)
    except FACTORY_INPUT_ERRORS as e:  # e.g. a missing data folder or a corrupt JSONL line, named by the factory
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)  # str(KeyError) adds quotes
        raise ConfigError(f"objective.factory {spec}: {type(e).__name__}: {message}") from e
    if not isinstance(task, dict):
        raise ConfigError(f"objective.factory {spec} returned {type(task).__name__}, expected a dict with "
                          "'train', 'objective' and optionally 'val', 'val_objective'")
    missing = {"train", "objective"} - set(task)
    if missing:
        raise ConfigError(f"objective.factory {spec} returned no {sorted(missing)}")
    if not task["train"]:
        raise ConfigError(f"objective.factory {spec} returned an empty 'train' list")
    return task


def check_model(cfg: RunConfig) -> None:
    """A model.name that is not 'embedded' must be a local model directory; fail before data or weights load."""
    from .lm.loading import EMBEDDED_NAMES, looks_like_path, resolve_model_dir

    if cfg.model.name not in EMBEDDED_NAMES:
        if looks_like_path(cfg.model.name) and not Path(cfg.model.name).expanduser().exists():
            raise ConfigError(f"model.name: the model directory {cfg.model.name} does not exist")
        try:
            resolve_model_dir(cfg.model.name)
        except ValueError as e:
            raise ConfigError(f"model.name: {e}") from None


@dataclass
class Loaded:
    model: Any  # the module the objective runs (a peft / prefix wrapper when the space is not "full")
    tokenizer: Any
    space: Any
    lm: Any


def load_tuned(cfg: RunConfig) -> Loaded:
    """Base model + the parameter space the config tunes + the LM wrapper objectives call."""
    from .lm import TransformersLM, load_model
    from .lm.trunk import TrunkCache, trunk_start
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
    extra = {"noise": s.noise, "mask_density": s.mask_density, "blockwise": s.blockwise}
    if s.kind == "lora":
        from .spaces import lora_space

        model, space = lora_space(model, r=s.lora_r, alpha=s.lora_alpha, **extra)
    elif s.kind == "prefix":
        from .spaces import prefix_space

        model, space = prefix_space(model, tok, num_tokens=s.prefix_tokens, **extra)
    elif s.kind == "steer":
        from .steering import steering_space

        model, space = steering_space(model, tok, layers=s.steer_layers or None, **extra)
    else:
        space = ParamSpace(model, include=s.include or None, exclude=s.exclude or None, **extra)
    start = trunk_start(model, space.tensors.values())  # layers below the tuned ones: their outputs are cached
    trunk = TrunkCache(model, start, strict=False) if start else None
    return Loaded(model, tok, space, TransformersLM(model, tok, batch_size=cfg.model.batch_size, trunk_cache=trunk))


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
    check_model(cfg)
    task = build_task(cfg)  # data and objectives are checked before the model is loaded
    loaded = load_tuned(cfg)
    objective = task["objective"]
    compare = objective if compares_outputs(objective) else None  # a pairwise objective judges its own outputs
    opt = make_optimizer(cfg, loaded.space, bool(getattr(objective, "maximize", True)), log, resume, compare)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    t = cfg.train
    trainer = Trainer(loaded.lm, opt, objective, task["train"], val_objective=task.get("val_objective"),
                      val_data=task.get("val"), out_dir=out, config=dataclasses.replace(t, progress=progress and t.progress))
    result = trainer.fit()  # validates after the last step, so best_step is chosen among measured values
    final_score = trainer.final_score
    opt.close()
    summary = {
        "objective": getattr(objective, "name", "objective"), "maximize": trainer.maximize,
        "val_start": result.start_value, "val_final": result.final_value, "val_best": result.best_value,
        "best_step": result.best_step, "steps": result.steps_done, "seconds": round(result.seconds, 1),
        "nonfinite_steps": opt.nonfinite_steps, "tuned_elements": loaded.space.numel(),
    }
    trunk = getattr(loaded.lm, "trunk_cache", None)
    if trunk is not None and not trunk.disabled:  # scoring ran only the layers from this one up
        summary["trunk_cached_below_layer"] = trunk.start
    flips = paired_flips(trainer.start_per_example, getattr(final_score, "per_example", None))
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
        else:  # base + trajectory replayed to the best step
            exported, _ = export(out, out / "model", step="best", force=True)
        summary["exported"] = str(exported)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def paired_flips(before, after) -> dict | None:
    """For 0/1 per-example scores: examples fixed and broken, and the exact two-sided sign-test p-value.

    Under "no change" each flipped example is fixed or broken with probability 1/2, so the p-value is
    scipy's exact binomial test of `fixed` successes in n = fixed + broken trials at p = 1/2.
    """
    from scipy.stats import binomtest

    if not before or not after or len(before) != len(after) or any(v not in (0.0, 1.0) for v in [*before, *after]):
        return None
    fixed = sum(1 for b, a in zip(before, after) if b == 0.0 and a == 1.0)
    broken = sum(1 for b, a in zip(before, after) if b == 1.0 and a == 0.0)
    n = fixed + broken
    p = float(binomtest(fixed, n, 0.5).pvalue) if n else 1.0
    return {"fixed": fixed, "broken": broken, "sign_test_p": p}


def read_run(run_dir: str | Path) -> tuple[RunConfig, dict]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.json)")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    return load_config(json.loads((run_dir / "config.json").read_text())), summary


def resolve_step(run_dir: str | Path, step: str | int, summary: dict) -> int:
    """The step count that --step names: 'best' (the best measured validation), 'last', or a number 0..steps."""
    done = len(Trajectory(Path(run_dir) / TRAJECTORY).records)
    if step == "best":
        if "best_step" not in summary:
            raise ConfigError(f"{run_dir} has no summary.json with a best step (the run did not finish): "
                              f"use --step last or a number 0-{done}")
        return int(summary["best_step"])
    if step == "last":
        return done
    try:
        number = int(step)
    except (TypeError, ValueError):
        raise ConfigError(f"--step {step!r}: expected 'best', 'last' or a step number 0-{done}") from None
    if not 0 <= number <= done:
        raise ConfigError(f"--step {number}: {run_dir} has steps 0-{done} (0 = the base model)")
    return number


def describe_step(step: str | int, steps: int, summary: dict) -> str:
    """'step 2 (best: validation 0.74)', so every message says which weights it used."""
    if step == "best":
        best = summary.get("val_best")
        return f"step {steps} (best: validation {best:.4g})" if best is not None else f"step {steps} (best)"
    return f"step {steps}" + (" (last)" if step == "last" else "")


def rebuild(run_dir: str | Path, step: str | int = "best") -> tuple[RunConfig, Loaded, int]:
    """Base model + trajectory replayed to `step` ('best', 'last' or a number): the tuned model, rebuilt."""
    cfg, summary = read_run(run_dir)
    cfg.model.backend = "transformers"  # a vLLM-recorded trajectory replays on transformers (same noise)
    steps = resolve_step(run_dir, step, summary)
    check_model(cfg)
    loaded = load_tuned(cfg)
    opt = MeZO.replay(loaded.space, Path(run_dir) / TRAJECTORY, steps=steps)
    return cfg, loaded, opt.step_count


def check_export_dir(out: str | Path, force: bool = False) -> Path:
    """Export writes a directory: refuse a file path, and a non-empty directory unless `force`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: export writes a directory (weights, config, tokenizer)")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"--out {out} is not empty: choose a new directory, or pass --force to replace its contents")
        if (out / TRAJECTORY).exists():
            raise ConfigError(f"--out {out} holds a run (trajectory.jsonl): --force will not delete it")
    return out


def export(run_dir: str | Path, out: str | Path, step: str | int = "best", force: bool = False) -> tuple[Path, int]:
    """Save the tuned model as a normal Hugging Face checkpoint (safetensors); returns (directory, step used).

    The output is checked before the slow rebuild, and with `force` emptied only once the model is ready.
    """
    read_run(run_dir)  # a missing run fails before the output directory is looked at
    out = check_export_dir(out, force)
    cfg, loaded, steps = rebuild(run_dir, step)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)  # force: replace, never mix old files (shards, adapters) with the new checkpoint
    return save_checkpoint(cfg, loaded, out), steps


def save_checkpoint(cfg: RunConfig, loaded: Loaded, out: str | Path) -> Path:
    """Write the model as it is now: full weights, LoRA merged into them, or the prefix / steering tensors alone."""
    out = Path(out)
    model = loaded.model
    if cfg.space.kind in ("prefix", "steer"):  # not part of a plain HF checkpoint (no bias to fold a steer into)
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file(loaded.space.state_dict(), str(out / f"{cfg.space.kind}.safetensors"))
        return out
    if cfg.space.kind == "lora":
        model = model.merge_and_unload()  # fold B A into the base weights: a plain checkpoint
    model.save_pretrained(out, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out)
    return out
