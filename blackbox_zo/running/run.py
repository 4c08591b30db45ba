"""From a validated RunConfig to a finished run: data, model, parameter space, optimizer, trainer, export.

A run directory holds config.json, trajectory.jsonl (seeds and scalars), metrics.jsonl, start.json,
objective.png and summary.json; the tuned weights are rebuilt from the base model + trajectory (export, eval, replay).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from blackbox_zo.faces.mezo import MeZO
from blackbox_zo.running.artifacts import export, paired_flips, save_checkpoint
from blackbox_zo.running.assembly import TRAJECTORY, build_task, check_model, load_tuned
from blackbox_zo.running.config import ConfigError, RunConfig, load_config
from blackbox_zo.running.trainer import Trainer, compares_outputs

__all__ = ["run", "make_mezo"]


def make_mezo(cfg: RunConfig, space, maximize: bool, trajectory: Path | None, resume: bool, compare=None) -> MeZO:
    """The MeZO a config describes: its `optim` section is the Spec, with maximize taken from the objective."""
    spec = dataclasses.replace(cfg.optim, maximize=maximize)
    return MeZO(space, spec=spec, compare=compare, trajectory=trajectory, resume=resume)


def run(config: RunConfig | dict | str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train as configured; returns (and writes) the summary with start/best/final validation values."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if cfg.distributed.workers:  # evaluate on Ray workers; null: in this process
        from blackbox_zo.distributed import run_distributed

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
    opt = make_mezo(cfg, loaded.space, bool(getattr(objective, "maximize", True)), log, resume, compare)
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
