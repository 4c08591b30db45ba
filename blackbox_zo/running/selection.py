"""The best-step choice of a run: the honest best (within the fluency bound and train.drift) and the unbounded one.

Why: `Trainer.fit` counts each validation once, in one call, and the summary reads both choices and the text numbers
of the start, the best and the final validation from one object, across resumes (running/best.py reads the logs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from blackbox_zo.running.best import Best, RunStart, best_across_resumes, honest
from blackbox_zo.running.quality import numbers_of
from blackbox_zo.setup.config import TrainConfig


class BestChoice:
    """The honest best step (`best`), the best with no bound (`free`) and the text numbers of every validated step."""

    def __init__(self, begun: RunStart, best: Best, free: Best, texts: dict, train: TrainConfig):
        self.begun, self.best, self.free, self.texts, self.train = begun, best, free, texts, train

    @classmethod
    def across_resumes(cls, out_dir: Path | None, maximize: bool, begun: RunStart, step_count: int, value_now: float | None,
                       text_now: dict | None, train: TrainConfig) -> tuple[BestChoice, list[dict]]:
        """The choice over the start, the logged validations and the resume point's; also the logged rows (plot)."""
        best, history = best_across_resumes(out_dir, maximize, begun, step_count, value_now, train.fluency_bound,
                                            text_now, train)
        free, _ = best_across_resumes(out_dir, maximize, begun, step_count, value_now,
                                      train=dataclasses.replace(train, drift=None))
        texts = {r["step"]: numbers_of(r) for r in history if numbers_of(r)}  # text numbers by validated step
        texts.update({step_count: text_now} if text_now else {})
        return cls(begun, best, free, texts, train), history

    def within(self, numbers: dict | None) -> bool:
        """Whether a validation's text stays within train.fluency_bound of the start's and within train.drift."""
        return honest(self.train.fluency_bound, self.train.drift, self.begun.text, numbers)

    def count(self, step: int, value: float, numbers: dict | None) -> None:
        """One validation: a candidate for both choices (for the honest one only within the bounds)."""
        self.texts.update({step: numbers} if numbers else {})
        self.best.update(value, step, self.within(numbers))
        self.free.update(value, step)

    def patience_spent(self) -> bool:
        """train.patience validations in a row without an honest improvement."""
        return self.train.patience is not None and self.best.stale >= self.train.patience

    def quality(self) -> dict:
        """What the summary says of a generation run's text (nothing for other runs): the text numbers at the start,
        the best and the final validation, and the step and value the best would have without the bounds."""
        start, texts, best = self.begun.text, self.texts, self.best
        if not start and not texts:
            return {}
        return {"text_start": start, "text_best": texts.get(best.step, start if best.step == 0 else None),
                "text_final": texts[max(texts)] if texts else None, "best_step_unbounded": self.free.step,
                "val_best_unbounded": self.free.value}
