"""The CMA-ES face: `opt = CMA(space, sigma0=0.5, maximize=True); opt.step(closure)`, or ask() / visit(k) / tell(values).

It tunes any backend whose tuned vector can be read and written whole (`bz.subspace`'s z; a small ParamSpace such
as steering vectors, flattened). Each generation logs its seed, sigma and values; replay and resume recompute
m, sigma and C from those values alone (blackbox_zo.step.cma), so they end bitwise where the live run did.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from blackbox_zo.faces.protocol import as_trajectory, replay_method
from blackbox_zo.step.attach import attach_log
from blackbox_zo.step.cma import CMAES, CMASettings
from blackbox_zo.step.engine import NonFiniteObjective, ObjectiveError
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError
from blackbox_zo.weights.noise import derive_seed

GENERATOR = "numpy-pcg64-cma-v1"  # the sample stream: numpy default_rng(derive_seed(seed, "cma", generation))


@dataclass
class CMAStep:
    """What one generation did, with the fields the Trainer reads from MeZO's StepResult."""

    step: int
    values: list[float]
    sigma: float
    mean_shift: float  # ||m_new - m_old||
    skipped: bool = False

    @property
    def value(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")

    @property
    def projected_grad(self) -> float:  # the Trainer logs it; for CMA-ES the mean's move is the analogue
        return self.mean_shift

    @property
    def lr(self) -> float:
        return self.sigma

    @property
    def eps(self) -> float:
        return self.sigma


class VectorAccess:
    """Reads and writes a backend's tuned numbers as one flat vector: `vector()/set_vector()` where the backend has
    them (Subspace), else a ParamSpace's tensors flattened in their order."""

    def __init__(self, backend):
        self.backend = backend
        self.dense = callable(getattr(backend, "vector", None)) and callable(getattr(backend, "set_vector", None))
        if not self.dense and not (hasattr(backend, "tensors") and callable(getattr(backend, "load_state_dict", None))):
            raise ValueError(f"CMA needs a backend whose tuned vector it can read and write (vector()/set_vector(), "
                             f"or a ParamSpace); {type(backend).__name__} has neither")
        if not self.dense:
            self.shapes = {n: t.shape for n, t in backend.state_dict().items()}

    def get(self) -> np.ndarray:
        if self.dense:
            return self.backend.vector().double().numpy()
        return torch.cat([t.reshape(-1) for t in self.backend.state_dict().values()]).double().numpy()

    def set(self, x: np.ndarray) -> None:
        if self.dense:
            self.backend.set_vector(torch.from_numpy(np.asarray(x, dtype=np.float32)))
            return
        flat, state, at = torch.from_numpy(np.asarray(x, dtype=np.float32)), {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            state[name] = flat[at:at + size].view(shape)
            at += size
        self.backend.load_state_dict(state)


class CMA:
    """CMA-ES over a backend's tuned vector, started at its current value; the weights sit at the mean m between steps.

    Settings: a CMASettings, or its keywords. `sigma0` is in the vector's units (for a subspace: 1 = a move of about
    theta0's spread per weight); `popsize` None takes 4 + floor(3 ln d). Values are maximised with maximize=True
    (CMA-ES ranks, so any monotone transform of the objective gives the same run).
    """

    last: CMAStep | None = None
    pairwise = False  # CMA-ES ranks numbers

    def __init__(self, space, settings: CMASettings | None = None, *, trajectory: str | os.PathLike | None = None,
                 resume: bool = False, max_nonfinite: int = 5, **keywords):
        self.settings = settings if settings is not None else CMASettings(**keywords)
        if settings is not None and keywords:
            raise ValueError(f"pass CMASettings or its keywords, not both ({sorted(keywords)})")
        self.backend = space
        self.access = VectorAccess(space)
        s = self.settings
        self.es = CMAES(self.access.get(), s.sigma0, s.popsize, s.seed)
        self.maximize, self.max_nonfinite = s.maximize, max_nonfinite
        self.nonfinite_steps, self._nonfinite_run = 0, 0
        self.candidates: np.ndarray | None = None
        self.trajectory: Trajectory | None = None
        if trajectory is not None:
            self.attach(trajectory, resume)

    # --- logs ----------------------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return self.es.generation

    @property
    def popsize(self) -> int:
        return self.es.lam

    def config(self) -> dict:
        s = self.settings
        return {"cma": {"dim": self.es.n, "popsize": self.es.lam, "sigma0": s.sigma0, "seed": s.seed,
                        "maximize": self.maximize}, "numel": self.es.n, "noise": None, "generator": GENERATOR,
                "evaluate": "inplace"}  # each candidate is written into the weights before it is evaluated

    def attach(self, trajectory: Trajectory | str | os.PathLike, resume: bool = False) -> None:
        """Log every generation to `trajectory`; with resume, first replay the generations it holds."""
        log = as_trajectory(trajectory)
        if log.header is not None:  # logs before CMASettings also held a stand-in Spec, which said nothing more
            log.header["config"].pop("spec", None)
        self.replay(attach_log(log, self.config(), self.backend.fingerprint(), resume))
        self.trajectory = log

    def report(self) -> dict:
        """The summary's part about the weights: how many numbers are tuned, and their fingerprint now."""
        return {"tuned_elements": self.backend.numel(), "final_fingerprint": self.backend.fingerprint()}

    @replay_method
    def replay(self, records) -> None:
        """Re-run logged generations from their values (no evaluation); the weights end at the replayed mean."""
        for rec in records:
            if rec["step"] != self.step_count:
                raise TrajectoryError(f"trajectory step {rec['step']} found where step {self.step_count} was expected")
            if rec["sigma"] != self.es.sigma:
                raise TrajectoryError(f"replay of step {rec['step']}: sigma {self.es.sigma} differs from the logged "
                                      f"{rec['sigma']} (another machine's linear algebra, or another log)")
            self.es.ask()
            self._update([float(v) for v in rec["values"]], log=False)
        self.access.set(self.es.mean)

    @classmethod
    def from_trajectory(cls, space, path: str | os.PathLike, steps: int | None = None) -> CMA:
        """Base `space` + a CMA trajectory's generations (or its first `steps`): the tuned weights."""
        log = Trajectory(path)
        if log.header is None or "cma" not in log.header["config"]:
            raise TrajectoryError(f"{path} holds no CMA-ES trajectory header")
        c = log.header["config"]["cma"]
        self = cls(space, CMASettings(sigma0=c["sigma0"], popsize=c["popsize"], seed=c["seed"], maximize=c["maximize"]))
        if self.es.n != c["dim"]:
            raise TrajectoryError(f"{path} was recorded on {c['dim']} numbers, this space has {self.es.n}")
        if space.fingerprint() != log.header["base_fingerprint"]:
            raise TrajectoryError(f"{path}: the given weights are not the base weights this log was recorded from")
        self.replay(log.records if steps is None else log.records[:steps])
        return self

    replay_file = from_trajectory

    def close(self) -> None:
        if self.trajectory is not None:
            self.trajectory.close()

    # --- ask / tell ----------------------------------------------------------------------------------
    def ask(self) -> list[np.ndarray]:
        """This generation's candidates (float64 vectors); visit(k) puts candidate k into the weights."""
        if self.candidates is None:
            self.candidates = self.es.ask()
        return list(self.candidates.copy())

    def visit(self, k: int) -> None:
        """Weights <- candidate k of the asked generation."""
        if self.candidates is None:
            raise RuntimeError("visit() before ask()")
        self.access.set(self.candidates[k])

    def tell(self, values) -> CMAStep:
        """Finish the generation with one value per candidate (in ask order); the weights move to the new mean."""
        if self.candidates is None:
            raise RuntimeError("tell() before ask(): ask for this generation's candidates first")
        values = [float(v) for v in values]
        if len(values) != self.es.lam:
            raise ValueError(f"tell: got {len(values)} values for {self.es.lam} candidates")
        self.last = self._update(values, log=True)
        self.access.set(self.es.mean)
        return self.last

    def _update(self, values: list[float], log: bool) -> CMAStep:
        t, sigma, before = self.step_count, self.es.sigma, self.es.mean
        self.candidates = None
        finite = [v for v in values if math.isfinite(v)]
        skipped = len(finite) < self.es.mu  # too few usable values to select the mu best
        if skipped:
            self.es.skip()
            self.nonfinite_steps += 1
            self._nonfinite_run += 1
        else:
            self._nonfinite_run = 0
            self.es.tell([-v for v in values] if self.maximize else values)  # CMAES minimises
        shift = float(np.linalg.norm(self.es.mean - before))
        result = CMAStep(t, values, sigma, shift, skipped)
        if log and self.trajectory is not None:
            self.trajectory.append({"step": t, "seed": derive_seed(self.settings.seed, "cma", t), "sigma": sigma,
                                    "values": values, "skipped": skipped})
        if log and skipped:
            warnings.warn(f"step {t}: only {len(finite)} finite values of {len(values)}; update skipped", stacklevel=3)
            if self._nonfinite_run >= self.max_nonfinite:
                raise NonFiniteObjective(f"objective was NaN/inf on {self._nonfinite_run} consecutive generations")
        return result

    # --- the torch.optim-style step ----------------------------------------------------------------
    def step(self, closure: Callable[[], Any]) -> float:
        """One generation: evaluate the closure at each candidate, update, leave the weights at the new mean."""
        self.ask()
        values = []
        with torch.no_grad():
            for k in range(self.es.lam):
                self.visit(k)
                try:
                    values.append(float(getattr(v := closure(), "value", v)))
                except Exception as e:
                    self.access.set(self.es.mean)
                    raise ObjectiveError(f"objective raised {type(e).__name__}: {e} (step {self.step_count}, "
                                         f"candidate {k}); weights were restored to the mean") from e
        return self.tell(values).value
