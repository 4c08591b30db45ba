"""From a validated RunConfig to a finished run: data, model, parameter space, optimizer, trainer, export.

A run directory holds config.json, inputs.json, trajectory.jsonl (seeds and scalars), metrics.jsonl, start.json,
objective.png, summary.json and run.lock (held by its one writer); the tuned weights are rebuilt from the base
model + trajectory (export, eval, replay).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from blackbox_zo.distributed.driver import DistributedMeZO
from blackbox_zo.faces.mezo import MeZO
from blackbox_zo.running import run_folder
from blackbox_zo.running.artifacts import export_own, paired_flips, save_checkpoint
from blackbox_zo.running.trainer import Trainer
from blackbox_zo.setup.assembly import Loaded, build_task, check_before_loading, load_tuned, step_settings
from blackbox_zo.setup.config import ConfigError, RunConfig, load_config
from blackbox_zo.setup.lock import RunLock
from blackbox_zo.setup.reference import attach_reference
from blackbox_zo.setup.run_files import SUMMARY, TRAJECTORY
from blackbox_zo.step.jsonl import dumps, write_atomic

__all__ = ["run", "make_face", "make_mezo"]


def make_mezo(cfg: RunConfig, space, task: dict, trajectory: Path | None, resume: bool) -> MeZO:
    """The face a config describes over `space`: MeZO with its `optim` section as the Spec, or CMA with its `cma`
    settings; maximize (and a pairwise compare) taken from the task's traits."""
    if cfg.cma is not None:  # CMA-ES, in the space's units
        from blackbox_zo.faces.cma import CMA

        settings = dataclasses.replace(cfg.cma, maximize=task["traits"].maximize)
        return CMA(space, settings, trajectory=trajectory, resume=resume)
    spec, compare = step_settings(cfg, task)
    return MeZO(space, spec=spec, compare=compare, trajectory=trajectory, resume=resume)


def make_face(cfg: RunConfig, task: dict, trajectory: Path | None, resume: bool) -> tuple[MeZO | DistributedMeZO, Loaded | None]:
    """The optimizer face a config describes, and the weights loaded here: DistributedMeZO when distributed.workers
    is set (the weights live on the Ray workers: None), else a MeZO over the tuned weights loaded in this process."""
    if cfg.distributed.workers:
        return DistributedMeZO(cfg, trajectory=trajectory, resume=resume), None
    loaded = load_tuned(cfg)
    return make_mezo(cfg, loaded.space, task, trajectory, resume), loaded


def local_report(loaded: Loaded | None) -> dict:
    """What the summary adds about weights tuned in this process: the cached trunk."""
    trunk = getattr(loaded.lm, "trunk_cache", None) if loaded else None
    if trunk is not None and not trunk.disabled:  # scoring ran only the layers from this one up
        return {"trunk_cached_below_layer": trunk.start}
    return {}


def run(config: RunConfig | dict | str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train as configured, in this process or on Ray workers (distributed.workers): one Trainer either way.

    The config, the model name and the task are checked first; then the output folder is locked (one writer),
    checked, and only then is the model loaded. Returns (and writes) the summary with start/best/final validation."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file, not a run folder")
    check_before_loading(cfg)
    task = build_task(cfg)  # data and objectives are checked before the model is loaded or a worker starts
    with RunLock(out) as lock:
        run_folder.prepare(out, resume)  # refuses a folder it must not touch: nothing of it is removed below
        try:
            return train(cfg, task, out, resume, progress)
        except BaseException:
            run_folder.remove_failed_start(out, lock.created_folder)  # only when no step was logged
            raise


def train(cfg: RunConfig, task: dict, out: Path, resume: bool, progress: bool) -> dict:
    """The run itself, in a locked and checked output folder."""
    inputs = run_folder.inputs_of(cfg, task)
    if resume:
        run_folder.check_resume(out, inputs)
    opt, loaded = make_face(cfg, task, out / TRAJECTORY, resume)
    task = attach_reference(cfg, task, loaded)  # pi_0 for the KL brake (objective.kl) and the text report's NLL
    try:
        earlier = run_folder.metrics_before(out, opt.step_count)
        run_folder.record_inputs(out, cfg, inputs)
        t = cfg.train
        trainer = Trainer(loaded.lm if loaded else None, opt, task["objective"], task["train"],
                          val_objective=task.get("val_objective"), val_data=task.get("val"), out_dir=out,
                          config=dataclasses.replace(t, progress=progress and t.progress))
        result = trainer.fit()  # validates after the last step, so best_step is chosen among measured values
        seconds = run_folder.earlier_seconds(earlier) + result.seconds  # all sessions of the run, resumes included
        summary = {
            # the training objective and its direction, then what validation measured and its direction (best step)
            "objective": task["traits"].name, "train_maximize": opt.maximize,
            "val_objective": task["val_traits"].name, "maximize": trainer.maximize,
            "val_start": result.start_value, "val_final": result.final_value, "val_best": result.best_value,
            "best_step": result.best_step, "steps": result.steps_done, "seconds": round(seconds, 1),
            "nonfinite_steps": opt.nonfinite_steps, **opt.report(), **local_report(loaded),
            **result.quality,  # a generation run: text numbers at start / best / final, best step without the bound
        }
        steps_done = opt.step_count
    finally:
        opt.close()
    fingerprint = summary.pop("final_fingerprint")
    flips = paired_flips(trainer.start_per_example, getattr(trainer.final_score, "per_example", None))
    if flips:
        summary["val_flips"] = flips
    write_atomic(out / SUMMARY, dumps(summary, indent=2))  # export reads best_step from it
    summary["final_fingerprint"] = fingerprint
    if cfg.export and loaded and cfg.model.backend == "vllm":
        from safetensors.torch import save_file

        # the engine's own final weights, so `replay --compare` can diff a transformers replay against them
        save_file(loaded.space.state_dict(), str(out / "vllm_final.safetensors"))
    if cfg.export:
        if loaded and cfg.model.backend == "transformers" and result.best_step == steps_done:
            shutil.rmtree(out / "model", ignore_errors=True)  # the run's own earlier export (a resume replaces it)
            exported = save_checkpoint(cfg, loaded, out / "model")  # the live weights are the best ones
        else:  # base + trajectory replayed to the best step
            exported, _ = export_own(out)
        summary["exported"] = str(exported)
    write_atomic(out / SUMMARY, dumps(summary, indent=2))
    return summary
