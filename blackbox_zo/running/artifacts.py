"""What a finished run leaves: its config and summary, the tuned model rebuilt from base + trajectory, exports.

Also `paired_flips`, the sign test on 0/1 validation scores that the summary reports.
"""

from __future__ import annotations

import json
from pathlib import Path

from blackbox_zo.running.export_folder import clean_stale, write_beside
from blackbox_zo.setup.assembly import Loaded, check_model, load_tuned
from blackbox_zo.setup.config import ConfigError, RunConfig, load_config
from blackbox_zo.setup.guard import EXPORT_MARKER, check_export_dir, mark_export
from blackbox_zo.setup.lock import ExportLock
from blackbox_zo.setup.run_files import CONFIG, SUMMARY, TRAJECTORY
from blackbox_zo.step.trajectory import Trajectory

__all__ = ["check_export_dir", "describe_step", "export", "export_own", "paired_flips", "read_run", "rebuild",
           "resolve_step", "save_checkpoint"]


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
    if not (run_dir / CONFIG).exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.json)")
    summary = json.loads((run_dir / SUMMARY).read_text()) if (run_dir / SUMMARY).exists() else {}
    return load_config(json.loads((run_dir / CONFIG).read_text())), summary


def resolve_step(run_dir: str | Path, step: str | int, summary: dict) -> int:
    """The step count that --step names: 'best' (the best measured validation), 'last', or a number 0..steps."""
    done = len(Trajectory(Path(run_dir) / TRAJECTORY).records)
    if step == "best":
        if "best_step" not in summary:
            raise ConfigError(f"{run_dir} has no summary.json with a best step (the run did not finish): "
                              f"use --step last or a number 0-{done}")
        best = int(summary["best_step"])
        if best > done:  # e.g. the log lost its torn last line: never silently use fewer steps than 'best' names
            raise ConfigError(f"the best step of {run_dir} is {best} (summary.json), but {TRAJECTORY} holds steps "
                              f"0-{done} only: use --step last (step {done}) or a number 0-{done}")
        return best
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


def export(run_dir: str | Path, out: str | Path, step: str | int = "best", force: bool = False) -> tuple[Path, int]:
    """Save the tuned model as a normal Hugging Face checkpoint (safetensors); returns (directory, step used).

    The output is checked before the slow rebuild and again right before the new folder is renamed into place
    (running/export_folder.py): never inside a run folder, and with `force` only an earlier export is replaced.
    One export per `--out` at a time (an ExportLock beside it); what a killed export left there goes first.
    """
    read_run(run_dir)  # a missing run fails before the output directory is looked at
    out = check_export_dir(out, force)
    with ExportLock(out):
        clean_stale(out)
        check_export_dir(out, force)
        return write_export(run_dir, out, step, lambda: check_export_dir(out, force))


def export_own(run_dir: str | Path) -> tuple[Path, int]:
    """The run's own export, RUN/model, at the best step (a run with `export: true` writes it; a resume replaces it)."""
    return write_export(run_dir, Path(run_dir) / "model", "best")


def write_export(run_dir: str | Path, out: Path, step: str | int, check=None) -> tuple[Path, int]:
    cfg, loaded, steps = rebuild(run_dir, step)
    return save_checkpoint(cfg, loaded, out, check, f"step {steps} of {run_dir}"), steps


def own_export_only(out: Path) -> None:
    """The check of a run's own export (RUN/model): absent, empty, or an export of ours, which it replaces."""
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_MARKER).is_file():
        raise ConfigError(f"{out} is not an earlier export (no {EXPORT_MARKER} in it): it is left as it is; move it "
                          "away to export the run there")


def save_checkpoint(cfg: RunConfig, loaded: Loaded, out: str | Path, check=None, what: str = "the model") -> Path:
    """Write the model as it is now: full weights, LoRA merged into them, steering folded (running/tuned.py).

    Written beside `out` and renamed into place once complete, after `check` (default: `out` is absent, empty or
    an export of ours); a model with a NaN or infinite weight is refused before anything is written."""
    out = Path(out)
    refuse_nonfinite(loaded.model, what)
    return write_beside(out, lambda temp: write_model(cfg, loaded, temp), check or (lambda: own_export_only(out)))


def refuse_nonfinite(model, what: str) -> None:
    """ConfigError naming the first parameter with a NaN or infinite value: such a model is never exported."""
    import torch

    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise ConfigError(f"{what} has non-finite weights ({name} holds NaN or inf): not exported; choose an "
                              "earlier --step")


def write_model(cfg: RunConfig, loaded: Loaded, out: Path) -> None:
    """The checkpoint's files in `out`, tokenizer first, and the export marker last."""
    model = loaded.model
    if cfg.space.kind in ("prefix", "steer"):  # steering folded into biases where it can be, else tensors + manifest
        from blackbox_zo.running.small_export import save_small_space

        save_small_space(cfg, loaded, out)
    else:
        if cfg.space.kind == "lora":
            model = model.merge_and_unload()  # fold B A into the base weights: a plain checkpoint
        loaded.tokenizer.save_pretrained(out)
        model.save_pretrained(out, safe_serialization=True)
    mark_export(out)
