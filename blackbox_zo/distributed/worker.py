"""The Ray actor: builds model, parameter space, task and optimizer replica from the run config (plain data).

Only seeds, indices and scalars cross its boundary: the driver sends a step number and task indices;
the worker draws the step's batch itself, scores its tasks and returns numbers. No callables, no tensors.
"""

from __future__ import annotations

import hashlib
import os
import time

import torch

from blackbox_zo.distributed.plan import Task, shard_of
from blackbox_zo.faces.ask_tell import AskTell
from blackbox_zo.setup.assembly import build_task, load_tuned, step_settings
from blackbox_zo.setup.calls import InProcess, Measured, measured, value_of
from blackbox_zo.setup.config import load_config


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


class Worker:
    """One evaluation worker (wrapped as a Ray actor by `actor_class`); `wid` names it in errors.

    It assembles task, model and optimizer exactly as a one-process run does (setup/assembly.py) and
    draws each step's batch and validates with the trainer's own code (setup/calls.py InProcess).
    """

    def __init__(self, config: dict, wid: int):
        self.wid, self.config = wid, config
        self.cfg = load_config(config)
        task = build_task(self.cfg)
        self.objective, self.pairwise = task["objective"], task["traits"].pairwise
        self.loaded = load_tuned(self.cfg)
        self.side = InProcess(self.loaded.lm, self.objective, task["traits"], task["train"],
                              task.get("val_objective") or self.objective, task.get("val"), self.cfg.train)
        # every worker holds its own replica of the optimizer over its own weights (dense state included)
        spec, compare = step_settings(self.cfg, task)  # a pairwise objective is its own compare
        self.at = AskTell(self.loaded.space, spec=spec, compare=compare)

    # --- identity and state ---------------------------------------------------------------------
    def pid(self) -> int:
        return os.getpid()

    def header(self) -> dict:
        """What the driver needs once: the engine config and base fingerprint (the trajectory header), the number
        of points per step, the candidates each told value is measured from, and whether the objective draws rounds."""
        return {"config": self.at.engine.config(), "base": self.loaded.space.fingerprint(), "points": len(self.at.ask()),
                "groups": self.at.groups(), "rounds": self.side.inputs.draws_rounds}

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
        return {"steps": len(records), "seconds": time.perf_counter() - t0}

    def reset(self, records: list[dict]) -> dict:
        """Rebuild in this process: reload the base weights and replay `records` (no new process to start)."""
        self.__init__(self.config, self.wid)
        return self.replay(records)

    # --- one step ---------------------------------------------------------------------------------
    def prepare(self, step: int) -> dict | None:
        """Draw the round of `step` if one is due (at the unperturbed weights); returns its stats, or None.

        Every worker draws it from the same weights and seed; one rebuilt mid-round draws afresh where it
        rejoins, as a resumed run does."""
        self._check_step(step)
        return self.side.inputs.at(step).drawn

    def evaluate(self, step: int, tasks: list[tuple[int, int, int]]) -> list[dict]:
        """Score `tasks` of `step`, visiting the step's points in ask() order (points in between are passed
        through unevaluated), so the weights make the same moves as in one process."""
        self._check_step(step)
        got = self.side.inputs.at(step)  # the trainer's batch and sampling seed of this step
        cands = self.at.ask()
        tasks = sorted(Task(*t) for t in tasks)
        out, outputs = [], {}
        points = sorted({t.point for t in tasks})
        self.at.share([cands[p] for p in points])  # a batched space scores exactly this worker's members in one forward
        for point in points:
            with self.at.visit(cands[point]):
                for task in (t for t in tasks if t.point == point):
                    shard = shard_of(got.batch, task)
                    if self.pairwise:
                        outputs[point] = self._call(self.objective.generate, task, shard, got.sample_seed, step)
                    else:
                        out.append(self._score(task, shard, got.sample_seed, step))
        return out + self._prefer(outputs) if self.pairwise else out

    def _prefer(self, outputs: dict[int, object]) -> list[dict]:
        """Pairwise: the worker judges its own pairs, so a preference (a number) travels, not the outputs; each
        point of a pair carries the pair's preference."""
        rows = []
        for direction, pair in enumerate(self.at.groups()):
            if all(p in outputs for p in pair):
                pref = self.at.prefer(direction, *(outputs[p] for p in pair))
                rows += [{"task": (p, 0, 1), "value": pref, "n": 0, "per_example": None} for p in pair]
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
        return self.at.record(self.at.tell_values(values))

    def validate(self) -> Measured | None:
        """The validation objective at the current weights, as the trainer computes it (plain numbers)."""
        if not self.side.val_data:
            return None
        return measured(self.side.validate())  # the answers travel too: the driver stores them (samples.jsonl)


def actor_class(cpus: float, gpus: float):
    """Worker as a Ray actor class with these resources; restarts are ours (rebuild by replay), not Ray's."""
    import ray

    return ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(Worker)

