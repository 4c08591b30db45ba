"""`run(config)` with `distributed.workers` set: the same run directory as one process, written by the driver.

config.json, trajectory.jsonl, metrics.jsonl, start.json, objective.png and summary.json (with final_fingerprint)
have the same layout, so `blackbox-zo eval/export/replay` and `--resume` work on a distributed run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from blackbox_zo.distributed.driver import DistributedMeZO
from blackbox_zo.running.best import best_across_resumes, run_start
from blackbox_zo.running.config import ConfigError, RunConfig
from blackbox_zo.running.trainer import plot_history


def run_distributed(cfg: RunConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train on Ray workers as the config says; returns (and writes) the summary, like `run`."""
    from tqdm import tqdm

    from blackbox_zo.running.artifacts import export, paired_flips
    from blackbox_zo.running.assembly import TRAJECTORY, build_task, check_model

    out = Path(cfg.output)
    log = out / TRAJECTORY
    if log.exists() and log.stat().st_size and not resume:
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another output")
    check_model(cfg)  # as in one process: model, data and objectives are checked here before any worker starts
    build_task(cfg)
    out.mkdir(parents=True, exist_ok=True)
    t = cfg.train
    with DistributedMeZO(cfg, trajectory=log, resume=resume) as opt:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        start_score = opt.validate()
        final_score = start_score
        maximize = start_score["maximize"] if start_score else True
        now = start_score["value"] if start_score else None
        begun = run_start(out, opt.step_count, now, start_score and start_score["per_example"])
        start = begun.value  # of the run's first start, also after a resume
        best, history = best_across_resumes(out, maximize, begun, opt.step_count, now)
        t0 = time.time()
        with open(out / "metrics.jsonl", "a", encoding="utf-8") as metrics, \
                tqdm(total=t.steps, initial=opt.step_count, disable=not progress, unit="step") as bar:
            while opt.step_count < t.steps:
                step = opt.step_count
                value = opt.step()
                rec = opt.last
                row = {"step": step, "objective": value, "projected_grad": math.sqrt(sum(c * c for _, c in rec["grad"])),
                       "lr": rec["lr"], "skipped": rec["skipped"], "time": time.time() - t0, "workers": opt.size()}
                if start_score and t.validates_after(step):
                    final_score = opt.validate()
                    row["val"] = final_score["value"]
                    best.update(row["val"], step + 1)
                history.append(row)
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                bar.update(1)
                if t.patience is not None and best.stale >= t.patience:
                    break
        if t.plot and history:
            plot_history(history, out / "objective.png", start_score["name"] if start_score else "objective", start)
        summary = {
            "objective": start_score["name"] if start_score else "objective", "maximize": maximize,
            "val_start": start, "val_final": final_score["value"] if final_score else None, "val_best": best.value,
            "best_step": best.step, "steps": opt.step_count, "seconds": round(time.time() - t0, 1),
            "nonfinite_steps": sum(1 for r in opt.records if r["skipped"]),
            "tuned_elements": next(iter(opt.states().values()))["numel"],
            "workers": opt.size(), "worker_rebuilds": opt.pool.rebuilds, "reruns": opt.reruns,
        }
        flips = paired_flips(begun.per_example, final_score and final_score["per_example"])
        if flips:
            summary["val_flips"] = flips
        summary["final_fingerprint"] = opt.fingerprint()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if cfg.export:  # base + trajectory replayed in this process to the best step
        exported, _ = export(out, out / "model", step="best", force=True)
        summary["exported"] = str(exported)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
