"""The torch.optim-style face: `opt = MeZO(model, maximize=True); value = opt.step(closure)`.

The closure re-evaluates the objective at the current (perturbed) weights and returns a number (outputs
for the pairwise estimator); it is called under torch.no_grad(). Settings are the keywords of `Spec`;
other keywords go to `ParamSpace`. Same seed, same closure => bitwise the same run. With
`trajectory=PATH` every step is logged; `resume=True` replays the log onto the base weights and carries on.
MeZO also asks and tells (AskTell's ask / visit / tell), except with the conservative optimizer.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from blackbox_zo.faces.ask_tell import AskTell, Candidate


class MeZO(AskTell):
    """Zeroth-order optimizer over a model's weights (MeZO, ZO-Bench, ES variants) with a torch.optim-style step."""

    steps_conservative = True  # step() re-evaluates after the update: the conservative optimizer works here

    def step(self, closure: Callable[[], Any]) -> float:
        """One ZO step; returns the mean of the objective values measured (pairwise: mean preference)."""
        if self._pending is not None:
            raise ValueError(f"step {self.step_count} was asked for: finish it with tell() before calling step()")
        with torch.no_grad():
            self.last = self.engine.step(closure)
        return self.last.value

    def ask(self) -> list[Candidate]:
        if self.engine.keep_best is not None:
            raise ValueError("the conservative optimizer re-evaluates the objective after the update: use step()")
        return super().ask()
