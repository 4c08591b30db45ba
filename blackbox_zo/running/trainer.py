"""The training loop: batches by step seed, evaluation every N steps and after the last, best step, early stop, logs, plot.

It knows nothing about models or metrics: an objective is any object with `evaluate(lm, batch, seed=)`
returning something with `.value` (or a float), plus `maximize` and `name`; or, for the pairwise
estimator, `generate(lm, batch, seed=)` returning outputs that the optimizer's `compare` judges. The best
state is kept as a trajectory position (a step number) chosen among measured values, never a weight copy.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from blackbox_zo.faces.mezo import MeZO
from blackbox_zo.running.best import best_across_resumes, run_start
from blackbox_zo.running.config import TrainConfig
from blackbox_zo.weights.noise import derive_seed


@dataclass
class TrainResult:
    start_value: float | None  # validation at the weights training started from
    best_value: float | None  # the best validation value measured (start included)
    best_step: int  # the step count at which best_value was measured
    steps_done: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    final_value: float | None = None  # validation after the last step (None without validation data)


def value_of(score: Any) -> float:
    """The number an objective's result stands for: `Score.value`, or the result itself."""
    return float(getattr(score, "value", score))


def compares_outputs(objective: Any) -> bool:
    """A pairwise objective: it generates outputs (`generate`) for the optimizer's compare instead of scoring."""
    return hasattr(objective, "generate") and not hasattr(objective, "evaluate")


def batch_for_step(data: Sequence[dict], size: int, seed: int, step: int) -> list[dict]:
    """The step's minibatch, drawn from (seed, step) alone so resumes and replays see the same data."""
    rng = random.Random(derive_seed(seed, "batch", step))
    return [data[i] for i in rng.sample(range(len(data)), min(size, len(data)))]


class Rounds:
    """Training rows for objectives that draw their own (BestOfN): `objective.refresh(lm, rows, seed=)` at the
    unperturbed weights every `objective.steps_per_round` steps; any other objective trains on `rows` as given.

    A resumed run draws its first round afresh at the weights it resumes from (the replayed steps need no rows).
    """

    def __init__(self, objective: Any, lm, rows: Sequence[dict], seed: int):
        self.refresh = getattr(objective, "refresh", None)
        self.every = getattr(objective, "steps_per_round", 0)
        self.lm, self.rows, self.seed = lm, list(rows), seed
        self.data: list[dict] = []
        self.drawn_at: int | None = None

    def data_for(self, step: int) -> tuple[list[dict], dict | None]:
        """The rows of `step`, and the stats of a round drawn for it (None when no round was drawn)."""
        if self.refresh is None:
            return self.rows, None
        if self.drawn_at is not None and self.data and step - self.drawn_at < self.every:
            return self.data, None
        for attempt in range(3):  # a round where no prompt's best beat its group draws again
            data, stats = self.refresh(self.lm, self.rows, seed=derive_seed(self.seed, "round", step, attempt))
            if data:
                self.data, self.drawn_at = data, step
                return data, stats
        raise RuntimeError(f"step {step}: 3 rounds in a row found no sample better than its group; the reward "
                           "gives every completion the same value (check it on a few completions)")


class Trainer:
    """Runs MeZO steps of a train objective (a scorer, or a pairwise objective) and tracks a validation objective."""

    def __init__(self, lm, optimizer: MeZO, objective, train_data: Sequence[dict], *, val_objective=None,
                 val_data: Sequence[dict] | None = None, config: TrainConfig | None = None, out_dir: str | Path | None = None):
        if not train_data:
            raise ValueError("train_data is empty")
        name = getattr(objective, "name", type(objective).__name__)
        self.pairwise = compares_outputs(objective)
        if self.pairwise != (optimizer.spec.estimator == "pairwise"):
            raise ValueError(f"objective {name} " + ("generates outputs for a pairwise comparison: build the optimizer "
                             "with estimator='pairwise', compare=judge" if self.pairwise else
                             "returns scores, but the optimizer's estimator is 'pairwise' (it compares outputs)"))
        maximize = optimizer.spec.maximize
        if not self.pairwise and maximize != bool(getattr(objective, "maximize", maximize)):
            raise ValueError(f"optimizer maximize={maximize} but objective {name} has maximize={objective.maximize}")
        if val_data and val_objective is None and self.pairwise:
            raise ValueError(f"objective {name} has no evaluate(): pass a val_objective (e.g. objective.win_rate(base_outputs))")
        self.lm, self.opt, self.objective, self.train_data = lm, optimizer, objective, list(train_data)
        self.val_objective = val_objective or objective
        self.val_data = list(val_data) if val_data else None
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir) if out_dir else None
        self.maximize = bool(getattr(self.val_objective, "maximize", True))

    def evaluate(self, data: Sequence[dict] | None = None) -> float:
        """The validation objective on all of `data` (default: the validation set), at the current weights."""
        return value_of(self.evaluate_score(data))

    def evaluate_score(self, data: Sequence[dict] | None = None) -> Any:
        """Like evaluate, but the objective's full result (per-example values where it gives them)."""
        data = list(data if data is not None else self.val_data or [])
        return self.val_objective.evaluate(self.lm, data, seed=derive_seed(self.config.seed, "eval"))

    def closure(self, batch: list[dict], seed: int):
        """What the optimizer calls at each perturbed point: a number, or outputs for the pairwise compare."""
        if self.pairwise:
            return lambda: self.objective.generate(self.lm, batch, seed=seed)
        return lambda: value_of(self.objective.evaluate(self.lm, batch, seed=seed))

    def fit(self) -> TrainResult:
        """Step until train.steps (or patience runs out); validation at the start, every eval_every steps, and last."""
        cfg = self.config
        metrics = self._open_metrics()
        writer = self._tensorboard()
        self.start_score = self.evaluate_score() if self.val_data else None
        self.final_score = self.start_score  # the latest validation score, at the current weights
        now = value_of(self.start_score) if self.val_data else None
        begun = run_start(self.out_dir, self.opt.step_count, now, getattr(self.start_score, "per_example", None))
        self.start_per_example = begun.per_example  # of the run's first start, also after a resume
        start = begun.value
        best, history = best_across_resumes(self.out_dir, self.maximize, begun, self.opt.step_count, now)
        t0 = time.time()
        bar = tqdm(total=cfg.steps, initial=self.opt.step_count, disable=not cfg.progress, unit="step")
        rounds = Rounds(self.objective, self.lm, self.train_data, cfg.seed)
        try:
            while self.opt.step_count < cfg.steps:
                t = self.opt.step_count
                data, drawn = rounds.data_for(t)
                batch = batch_for_step(data, cfg.batch_size, cfg.seed, t)
                sample_seed = derive_seed(cfg.seed, "sample", t)  # both sides of a pair sample alike
                value = self.opt.step(self.closure(batch, sample_seed))
                row = {"step": t, "objective": value, "projected_grad": self.opt.last.projected_grad,
                       "lr": self.opt.last.lr, "skipped": self.opt.last.skipped, "time": time.time() - t0,
                       **({"round": drawn} if drawn else {})}
                # validate every eval_every steps and after the last one, so "best" is always a measured step
                if self.val_data and cfg.validates_after(t):  # so "best" is always a measured step
                    self.final_score = self.evaluate_score()
                    row["val"] = value_of(self.final_score)
                    best.update(row["val"], t + 1)
                history.append(row)
                self._emit(metrics, writer, row)
                bar.update(1)
                bar.set_postfix(obj=f"{value:.4g}", g=f"{row['projected_grad']:.3g}",
                                **({"val": f"{row['val']:.4g}"} if "val" in row else {}))
                if cfg.patience is not None and best.stale >= cfg.patience:
                    break
        finally:
            bar.close()
            if metrics:
                metrics.close()
            if writer:
                writer.close()
        final = value_of(self.final_score) if self.final_score is not None else None
        result = TrainResult(start, best.value, best.step, self.opt.step_count, history, time.time() - t0, final)
        if self.out_dir and cfg.plot:
            plot_history(history, self.out_dir / "objective.png", getattr(self.objective, "name", "objective"), start)
        return result

    def _open_metrics(self):
        if not self.out_dir:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8")

    def _tensorboard(self):
        if not (self.config.tensorboard and self.out_dir):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise RuntimeError("tensorboard logging needs the 'tensorboard' package: "
                               "pip install 'blackbox_zo[tensorboard]'") from e
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    @staticmethod
    def _emit(metrics, writer, row: dict) -> None:
        if metrics:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
        if writer:
            for key in ("objective", "projected_grad", "lr", "val"):
                if key in row and math.isfinite(row[key]):
                    writer.add_scalar(key, row[key], row["step"])


def plot_history(history: list[dict], path: Path, name: str, start: float | None = None) -> Path:
    """PNG of the per-step train objective (with a running mean) and the validation points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] + 1 for r in history]
    vals = [r["objective"] for r in history]
    window = max(1, len(vals) // 20)
    smooth = [sum(vals[max(0, i - window + 1): i + 1]) / len(vals[max(0, i - window + 1): i + 1]) for i in range(len(vals))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, vals, alpha=0.25, label="train (per step)")
    ax.plot(steps, smooth, label=f"train (running mean, {window})")
    val = ([(0, start)] if start is not None else []) + [(r["step"] + 1, r["val"]) for r in history if "val" in r]
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
