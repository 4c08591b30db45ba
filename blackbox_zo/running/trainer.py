"""The training loop: batches by step seed, evaluation every N steps and after the last, best step, early stop, logs, plot.

It knows nothing about models or metrics: an objective is any object with `evaluate(lm, batch, seed=)`
returning something with `.value` (or a float), plus `maximize` and `name`; or, for the pairwise
estimator, `generate(lm, batch, seed=)` returning outputs that the optimizer's `compare` judges. The best
state is kept as a trajectory position (a step number) chosen among measured values, never a weight copy.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from blackbox_zo.faces.protocol import EvaluatesItself
from blackbox_zo.running.best import RunStart, run_start
from blackbox_zo.running.quality import numbers_of, plot_text, postfix, text_numbers, val_columns, write_samples
from blackbox_zo.running.selection import BestChoice
from blackbox_zo.setup.batches import Rounds, batch_for_step
from blackbox_zo.setup.calls import InProcess, closure, value_of
from blackbox_zo.setup.compatibility import check_optimizer
from blackbox_zo.setup.config import TrainConfig
from blackbox_zo.setup.drift_target import drift_of
from blackbox_zo.setup.run_files import METRICS, PLOT
from blackbox_zo.setup.traits import traits_of
from blackbox_zo.step.jsonl import JsonlWriter, read_jsonl

__all__ = ["Rounds", "TrainConfig", "TrainResult", "Trainer", "batch_for_step", "plot_history", "value_of"]


@dataclass
class TrainResult:
    start_value: float | None  # validation at the weights training started from
    best_value: float | None  # the best validation value measured (start included)
    best_step: int  # the step count at which best_value was measured
    steps_done: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    final_value: float | None = None  # validation after the last step (None without validation data)
    # a generation run's text numbers at the start, best and final validations, and the best step without the bound
    quality: dict = field(default_factory=dict)


class Trainer:
    """Runs zeroth-order steps of a train objective (a scorer, or a pairwise objective) and tracks a validation objective.

    `optimizer` is any face (blackbox_zo.faces.protocol.Face: MeZO, AskTell, CMA, DistributedMeZO):
    a face that holds its weights elsewhere (DistributedMeZO) also evaluates there, through its own
    `step_call(step)` and `validate()`; otherwise the objectives run on `lm` in this process.
    """

    def __init__(self, lm, optimizer, objective, train_data: Sequence[dict], *, val_objective=None,
                 val_data: Sequence[dict] | None = None, config: TrainConfig | None = None, out_dir: str | Path | None = None):
        if not train_data:
            raise ValueError("train_data is empty")
        self.traits = traits_of(objective)  # read once: the compatibility check and the in-process side use them
        check_optimizer(self.traits, optimizer, bool(val_data) and val_objective is None)
        self.pairwise = self.traits.pairwise
        self.lm, self.opt, self.objective, self.train_data = lm, optimizer, objective, list(train_data)
        self.val_objective = val_objective or objective
        self.val_data = list(val_data) if val_data else None
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir) if out_dir else None
        self.maximize = (traits_of(val_objective) if val_objective else self.traits).maximize  # of the best step
        self.side = optimizer if isinstance(optimizer, EvaluatesItself) else InProcess(
            lm, objective, self.traits, self.train_data, self.val_objective, self.val_data, self.config)

    @property
    def drift_lm(self):
        """The LM whose answers' drift from pi_0 validation reads: this process's, when it evaluates here (a face
        that evaluates on its workers reports no drift: pi_theta lives there)."""
        return self.lm if isinstance(self.side, InProcess) else None

    def evaluate(self, data: Sequence[dict] | None = None) -> float:
        """The validation objective on all of `data` (default: the validation set), at the current weights."""
        return value_of(self.evaluate_score(data))

    def evaluate_score(self, data: Sequence[dict] | None = None) -> Any:
        """Like evaluate, but the objective's full result (per-example values where it gives them)."""
        return self.side.validate(data)

    def closure(self, batch: list[dict], seed: int):
        """What the optimizer calls at each perturbed point: a number, or outputs for the pairwise compare."""
        return closure(self.objective, self.pairwise, self.lm, batch, seed)

    def fit(self) -> TrainResult:
        """Step until train.steps, train.max_seconds of stepping or patience runs out; validation at the start, every
        eval_every steps, and after the last step. Reads top to bottom: start, then step / validate / log / stop."""
        cfg = self.config
        metrics, writer = self._open_metrics(), self._tensorboard()
        begun, choice, history = self._start()
        clock = StepClock(cfg.max_seconds)
        bar = tqdm(total=cfg.steps, initial=self.opt.step_count, disable=not cfg.progress, unit="step")
        try:
            while self.opt.step_count < cfg.steps:
                row = self._step(clock)
                if self.val_data and (cfg.validates_after(row["step"] - 1) or clock.spent()):  # "best" is measured
                    with clock.paused():
                        self._validate(row, choice)
                history.append(row)
                self._emit(metrics, writer, row)
                show(bar, row)
                if clock.spent() or choice.patience_spent():
                    break
        finally:
            bar.close()
            for log in (metrics, writer):
                if log:
                    log.close()
        final = value_of(self.final_score) if self.final_score is not None else None
        result = TrainResult(begun.value, choice.best.value, choice.best.step, self.opt.step_count, history,
                             clock.elapsed(), final, choice.quality())
        if self.out_dir and cfg.plot:
            plot_history(history, self.out_dir / PLOT, self.traits.name, begun.value, begun.text)
        return result

    def _start(self) -> tuple[RunStart, BestChoice, list[dict]]:
        """The validation training starts from (a resume reads the run's first from start.json), its answers, and
        the best-step choice over every validation logged so far."""
        self.start_score = self.evaluate_score() if self.val_data else None
        self.final_score = self.start_score  # the latest validation score, at the current weights
        now = value_of(self.start_score) if self.val_data else None
        text_now = text_numbers(self.val_objective, self.start_score, self.drift_lm) if self.val_data else None
        begun = run_start(self.out_dir, self.opt.step_count, now, getattr(self.start_score, "per_example", None),
                          text_now)
        if self.val_data and not self.opt.step_count:
            write_samples(self.out_dir, 0, self.start_score)  # the untuned answers, beside every later validation's
        self.start_per_example = begun.per_example  # of the run's first start, also after a resume
        choice, history = BestChoice.across_resumes(self.out_dir, self.maximize, begun, self.opt.step_count, now,
                                                    text_now, self.config)
        return begun, choice, history

    def _step(self, clock: StepClock) -> dict:
        """One optimizer step at the next step's inputs; its metrics row."""
        t = self.opt.step_count
        call = self.side.step_call(t)  # at the unperturbed weights: a round may be drawn for it
        value = self.opt.step(call)
        last = self.opt.last
        return {"step": t + 1, "objective": value, "projected_grad": last.projected_grad, "lr": last.lr,
                "skipped": last.skipped, "time": clock.elapsed(), **call.info}

    def _validate(self, row: dict, choice: BestChoice) -> None:
        """Validation at the current weights: value, text numbers and drift into `row`, answers into samples.jsonl,
        a candidate for the best step, and train.drift's next anchor strength."""
        self.final_score = self.evaluate_score()
        row["val"] = value_of(self.final_score)
        numbers = text_numbers(self.val_objective, self.final_score, self.drift_lm)
        row.update(val_columns(numbers))
        write_samples(self.out_dir, row["step"], self.final_score)
        choice.count(row["step"], row["val"], numbers)
        row.update(self._hold_drift(numbers))

    def _hold_drift(self, numbers: dict | None) -> dict:
        """train.drift: the anchor's next strength from the drift this validation measured (a metrics column)."""
        kl = drift_of(numbers)
        if self.config.drift is None or kl is None:
            return {}
        engine = self.opt.engine  # the drift hold is checked to run in this process (setup/compatibility.py check_drift)
        engine.anchor_scale = self.config.drift.next_scale(engine.anchor_scale, kl)
        return {"anchor_scale": engine.anchor_scale}

    def _open_metrics(self):
        if not self.out_dir:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / METRICS
        return JsonlWriter(path, read_jsonl(path, report=False).torn)  # fsynced per row; a torn last line is cut

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
            metrics.write(row)
        if writer:  # the text numbers too (val_nll, val_distinct_2, ...): tuning's effect on the answers, plotted
            for key in ("objective", "projected_grad", "lr", "val", *(k for k in row if k.startswith("val_"))):
                if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                    writer.add_scalar(key, row[key], row["step"])


class StepClock:
    """Seconds of stepping since fit began, validation excluded: what train.max_seconds limits."""

    def __init__(self, limit: float | None):
        self.limit, self.t0, self.validating = limit, time.time(), 0.0

    def elapsed(self) -> float:
        return time.time() - self.t0

    def spent(self) -> bool:
        return self.limit is not None and self.elapsed() - self.validating >= self.limit

    @contextlib.contextmanager
    def paused(self):
        began = time.time()
        try:
            yield
        finally:
            self.validating += time.time() - began


def show(bar, row: dict) -> None:
    """The progress line after a step: its objective, projected gradient, and validation and text numbers."""
    bar.update(1)
    bar.set_postfix(obj=f"{row['objective']:.4g}", g=f"{row['projected_grad']:.3g}",
                    **({"val": f"{row['val']:.4g}"} if "val" in row else {}), **postfix(numbers_of(row)))


def plot_history(history: list[dict], path: Path, name: str, start: float | None = None,
                 start_text: dict | None = None) -> Path:
    """PNG of the per-step train objective (with a running mean) and the validation points; for a generation run,
    a second panel with the held answers' text numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    vals = [math.nan if r["objective"] is None else r["objective"] for r in history]  # a skipped step's NaN: null
    window = max(1, len(vals) // 20)
    smooth = [sum(vals[max(0, i - window + 1): i + 1]) / len(vals[max(0, i - window + 1): i + 1]) for i in range(len(vals))]
    text = ([(0, start_text)] if start_text else []) + [(r["step"], numbers_of(r)) for r in history if numbers_of(r)]
    fig, axes = plt.subplots(2 if text else 1, 1, figsize=(7, 7 if text else 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, vals, alpha=0.25, label="train (per step)")
    ax.plot(steps, smooth, label=f"train (running mean, {window})")
    val = ([(0, start)] if start is not None else []) + [(r["step"], r["val"]) for r in history if "val" in r]
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.legend()
    if text:
        plot_text(axes[1][0], text)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
