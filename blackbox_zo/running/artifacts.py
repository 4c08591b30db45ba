"""What a finished run leaves: its config and summary, the tuned model rebuilt from base + trajectory, exports.

Also `paired_flips`, the sign test on 0/1 validation scores that the summary reports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from blackbox_zo.setup.assembly import TRAJECTORY, Loaded, check_model, load_tuned
from blackbox_zo.setup.config import ConfigError, RunConfig, load_config
from blackbox_zo.step.trajectory import Trajectory


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
    if cfg.cma is not None:  # CMA-ES logs values per generation: m, sigma and C are recomputed from them
        from blackbox_zo.faces.cma import CMA

        opt = CMA.from_trajectory(loaded.space, Path(run_dir) / TRAJECTORY, steps=steps)
    else:
        from blackbox_zo.faces.mezo import MeZO  # torch: imported once the inputs are checked

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
