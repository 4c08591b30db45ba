"""The Ray actor: builds model, parameter space, task and optimizer replica from the run config (plain data).

Only seeds, indices and scalars cross its boundary: the driver sends a step number and task indices;
the worker draws the step's batch itself, scores its tasks and returns numbers. No callables, no tensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import torch

from blackbox_zo.distributed.plan import Task, shard_of
from blackbox_zo.faces.ask_tell import AskTell
from blackbox_zo.running.assembly import build_task, load_tuned
from blackbox_zo.running.config import load_config
from blackbox_zo.running.trainer import batch_for_step, compares_outputs, value_of
from blackbox_zo.weights.noise import derive_seed


class WorkerError(RuntimeError):
    """An objective failed on a worker; the message names the worker, the step and the point."""


def digest(space) -> str:
    """Exact digest of every tuned value (blake2b over the raw bytes), to compare replicas bitwise."""
    tensors = getattr(space, "masters", None) or getattr(space, "tensors", None)
    if tensors is None:
        return space.fingerprint()  # a remote backend (vLLM): its own fingerprint
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class StepRecords:
    """Stands in for the engine's trajectory file: keeps the step records it logs, for the driver to write."""

    def __init__(self):
        self.records: list[dict] = []

    def append(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def worker_spec(cfg, objective):
    """The run's Spec with maximize taken from the objective, as a one-process run builds it."""
    return dataclasses.replace(cfg.optim, maximize=bool(getattr(objective, "maximize", True)))


class Worker:
    """One evaluation worker (wrapped as a Ray actor by `actor_class`); `wid` names it in errors."""

    def __init__(self, config: dict, wid: int):
        self.wid, self.config = wid, config
        self.cfg = load_config(config)
        task = build_task(self.cfg)
        self.train, self.objective = list(task["train"]), task["objective"]
        self.val, self.val_objective = task.get("val"), task.get("val_objective") or task["objective"]
        self.loaded = load_tuned(self.cfg)
        # every worker holds its own replica of the optimizer over its own weights (dense state included)
        self.pairwise = compares_outputs(self.objective)  # it generates outputs; it is its own compare
        self.at = AskTell(self.loaded.space, spec=worker_spec(self.cfg, self.objective),
                          compare=self.objective if self.pairwise else None)
        self.log = self.at.engine.trajectory = StepRecords()  # the driver writes the records to the file

    # --- identity and state ---------------------------------------------------------------------
    def pid(self) -> int:
        return os.getpid()

    def header(self) -> tuple[dict, str, int]:
        """(engine config, base fingerprint) for the trajectory header, and the number of points per step."""
        return self.at.engine.config(), self.loaded.space.fingerprint(), len(self.at.ask())

    def state(self) -> dict:
        """Step count, exact weight digest and the summary fingerprint of this worker's weights."""
        return {"step": self.at.step_count, "digest": digest(self.loaded.space),
                "fingerprint": self.loaded.space.fingerprint(), "numel": self.loaded.space.numel()}

    def apply(self, pairs: list[tuple[int, float]]) -> None:
        """theta <- theta + sum c z(seed): the Backend move, exposed for tools (and to force a fault in tests)."""
        self.loaded.space.apply(pairs)

    def replay(self, records: list[dict]) -> dict:
        """Bring base weights to the end of `records` (seeds and logged values only); returns timing."""
        t0 = time.perf_counter()
        self.at.replay(records)
        self.log.records.clear()  # replayed records are the driver's already
        return {"steps": len(records), "seconds": time.perf_counter() - t0}

    def reset(self, records: list[dict]) -> dict:
        """Rebuild in this process: reload the base weights and replay `records` (no new process to start)."""
        self.__init__(self.config, self.wid)
        return self.replay(records)

    # --- one step ---------------------------------------------------------------------------------
    def evaluate(self, step: int, tasks: list[tuple[int, int, int]]) -> list[dict]:
        """Score `tasks` of `step`, visiting the step's points in ask() order (points in between are passed
        through unevaluated), so the weights make the same moves as in one process."""
        self._check_step(step)
        cands = self.at.ask()
        tasks = sorted(Task(*t) for t in tasks)
        batch = batch_for_step(self.train, self.cfg.train.batch_size, self.cfg.train.seed, step)
        sample_seed = derive_seed(self.cfg.train.seed, "sample", step)  # both sides of a pair sample alike
        out, outputs = [], {}
        for point in sorted({t.point for t in tasks}):
            with self.at.visit(cands[point]):
                for task in (t for t in tasks if t.point == point):
                    if self.pairwise:
                        outputs[point] = self._call(self.objective.generate, task, shard_of(batch, task), sample_seed, step)
                    else:
                        out.append(self._score(task, shard_of(batch, task), sample_seed, step))
        return out + self._prefer(outputs, step) if self.pairwise else out

    def _prefer(self, outputs: dict[int, object], step: int) -> list[dict]:
        """Pairwise: the worker judges its own pairs, so a preference (a number) travels, not the outputs."""
        one_pair = dataclasses.replace(self.at.engine.estimator, n=1)  # same compare, checks and messages
        rows = []
        for plus in sorted(p for p in outputs if p % 2 == 0):
            pref = one_pair.reduce([outputs[plus], outputs[plus + 1]], step=step)[0]
            rows += [{"task": (p, 0, 1), "value": pref, "n": 0, "per_example": None} for p in (plus, plus + 1)]
        return rows

    def _check_step(self, step: int) -> None:
        if self.at.step_count != step:
            raise RuntimeError(f"worker {self.wid} is at step {self.at.step_count}, asked about step {step}")

    def _call(self, fn, task: Task, shard: list, sample_seed: int, step: int):
        """The objective's evaluate or generate at the current point; an error names worker, step and point."""
        try:
            return fn(self.loaded.lm, shard, seed=sample_seed)
        except Exception as e:
            raise WorkerError(f"objective raised {type(e).__name__}: {e} on worker {self.wid} (pid {os.getpid()}), "
                              f"step {step}, point {task.point} (shard {task.shard} of {task.shards})") from e

    def _score(self, task: Task, shard: list, sample_seed: int, step: int) -> dict:
        score = self._call(self.objective.evaluate, task, shard, sample_seed, step)
        per = getattr(score, "per_example", None)
        return {"task": tuple(task), "value": value_of(score), "n": len(shard),
                "per_example": [None if v is None else float(v) for v in per] if per is not None else None}

    def tell(self, step: int, values: list[float]) -> dict:
        """Pass through the step's remaining points, then apply the update: returns the step's log record."""
        self._check_step(step)
        self.at.tell_values(values)
        return self.log.records.pop()

    def validate(self) -> dict | None:
        """The validation objective at the current weights: value and per-example values (plain numbers)."""
        if not self.val:
            return None
        score = self.val_objective.evaluate(self.loaded.lm, list(self.val), seed=derive_seed(self.cfg.train.seed, "eval"))
        per = getattr(score, "per_example", None)
        return {"value": value_of(score), "per_example": list(per) if per is not None else None,
                "name": getattr(self.val_objective, "name", "objective"),
                "maximize": bool(getattr(self.val_objective, "maximize", True))}


def actor_class(cpus: float, gpus: float):
    """Worker as a Ray actor class with these resources; restarts are ours (rebuild by replay), not Ray's."""
    import ray

    return ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(Worker)

