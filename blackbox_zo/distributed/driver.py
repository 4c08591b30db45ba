"""DistributedMeZO: the optimizer face of a Ray run. Each step's points go to workers, values come back,
every worker applies the same update from them, and the driver writes the trajectory.

The driver holds no weights. It sends step numbers and task indices, receives numbers, and keeps the
log of seeds and values that any worker (or a later export) replays from the base model.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from blackbox_zo.distributed.faults import Pool
from blackbox_zo.distributed.plan import Task, combine, group_values, plan_step
from blackbox_zo.faces.protocol import as_trajectory
from blackbox_zo.setup.calls import Measured, StepCall
from blackbox_zo.setup.compatibility import check_config
from blackbox_zo.setup.config import ConfigError, RunConfig, load_config
from blackbox_zo.step.attach import attach_log
from blackbox_zo.step.engine import ObjectiveError, StepResult
from blackbox_zo.step.spec import Spec
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError

STARTUP_TIMEOUT_S = 1800.0  # loading a large model and replaying a long trajectory


def connect(address: str | None, workers: int, cpus_per_worker: float) -> None:
    """Join the Ray cluster at `address`, or start a local one big enough for `workers` (once per process)."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("distributed runs need Ray: pip install -e \".[ray]\"") from e
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
        return
    # Ray runs workers at nice 15; here they are the job, not background work: on a busy machine nice 15 starves them
    os.environ.setdefault("RAY_worker_niceness", "0")
    # a new local instance ("local": never another run's cluster); logical CPUs: 2 workers share a 2-core machine
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(workers * cpus_per_worker)), include_dashboard=False)


def check_resources(workers: int, cpus: float, gpus: float) -> None:
    """Fail now, naming the shortfall, rather than wait forever for workers the cluster cannot place."""
    import ray

    have = ray.cluster_resources()
    for name, per in (("CPU", cpus), ("GPU", gpus)):
        if per and have.get(name, 0.0) < workers * per:
            raise ConfigError(f"distributed: {workers} workers x {per:g} {name} need {workers * per:g} {name}s, "
                              f"the Ray cluster has {have.get(name, 0.0):g} (lower distributed.workers or "
                              f"distributed.{name.lower()}s_per_worker, or add nodes)")


def result_of(record: dict) -> StepResult:
    """A trajectory record as the StepResult a one-process step returns (the update itself is not logged)."""
    return StepResult(record["step"], list(record["values"]), [(s, c) for s, c in record["grad"]], record["lr"],
                      record["eps"], skipped=record["skipped"], checks=list(record["checks"]))


class DistributedMeZO:
    """A MeZO over N Ray workers built from a run config (plain data); `step()` runs one zeroth-order step.

    Same config, same seed => the same trajectory and bitwise the same weights as one process, whatever
    the number of workers, and through worker crashes, hangs and rebuilds. It is an optimizer face for the
    Trainer (spec, step_count, step, last, nonfinite_steps) that also evaluates where its weights are:
    `step_call` and `validate` run the trainer's own batch and validation code on the workers.
    """

    def __init__(self, config: RunConfig | dict | str | Path, workers: int | None = None, address: str | None = None,
                 trajectory: str | os.PathLike | None = None, resume: bool = False):
        cfg = config if isinstance(config, RunConfig) else load_config(config)
        d = cfg.distributed
        self.pairwise = cfg.optim.estimator == "pairwise"
        size = workers or d.workers or 1
        check_config(replace(cfg, distributed=replace(d, workers=size)))  # before Ray starts
        self.cfg, self.split, self.timeout_s, self.check_every = cfg, d.split, d.point_timeout_s, d.check_every
        connect(address or d.address, size, d.cpus_per_worker)
        check_resources(size, d.cpus_per_worker, d.gpus_per_worker)
        self.pool = Pool(cfg.to_dict(), size, d.cpus_per_worker, d.gpus_per_worker, STARTUP_TIMEOUT_S)
        self.log: Trajectory | None = None
        self.records: list[dict] = []
        self.last: StepResult | None = None
        self.reruns: list[dict] = []  # tasks of lost workers and where they ran again
        try:
            self._start(trajectory, resume)
        except BaseException:
            self.close()  # no orphaned workers when the start fails (bad trajectory, failing factory, ...)
            raise

    def _start(self, trajectory, resume: bool) -> None:
        import ray

        self.pool.start()
        header = ray.get(self.pool.call(self.pool.live()[0], "header"))
        self.spec = Spec.from_dict(header["config"]["spec"])  # the Spec every worker built from the config
        self.n_points, self.groups, self.draws_rounds = header["points"], header["groups"], header["rounds"]
        self.header = header
        if trajectory is not None:
            self.attach(trajectory, resume)

    @property
    def maximize(self) -> bool:
        return self.spec.maximize

    def attach(self, trajectory: Trajectory | str | os.PathLike, resume: bool = False) -> None:
        """Log every step to `trajectory`; with resume, the workers first replay the steps it holds."""
        if self.records:
            raise TrajectoryError(f"attach a trajectory before the first step: {len(self.records)} steps are unlogged")
        self.log = as_trajectory(trajectory)
        self.replay(attach_log(self.log, self.header["config"], self.header["base"], resume), log=False)

    def replay(self, records: Sequence[dict], log: bool = True) -> None:
        """Every worker applies logged steps (no evaluation); the driver's records (and log) go on from their end."""
        records = list(records)
        if [r["step"] for r in records] != list(range(self.step_count, self.step_count + len(records))):
            raise TrajectoryError(f"replay: the records do not continue at step {self.step_count}")
        self.pool.replay(self.pool.live(), records)
        self.records += records
        if log and self.log is not None:
            for record in records:
                self.log.append(record)

    @property
    def step_count(self) -> int:
        return len(self.records)

    @property
    def nonfinite_steps(self) -> int:
        """Steps skipped because an objective value was NaN or infinite."""
        return sum(1 for r in self.records if r["skipped"])

    @property
    def workers(self) -> dict[int, int]:
        """Live worker id -> process id (on its node)."""
        return dict(self.pool.pids)

    # --- one step ---------------------------------------------------------------------------------
    def step_call(self, step: int) -> StepCall:
        """The call for `step` a trainer hands to `step()`: the workers draw its batch themselves; a round due now
        is drawn here, by every worker at the unperturbed weights, and its stats join the step's metrics row."""
        info = {}
        if self.draws_rounds:
            calls = {w: (self.pool.call(w, "prepare", step), self.timeout_s * self.n_points) for w in self.pool.live()}
            try:
                drawn, dead = self.pool.gather(calls)
            except Exception as e:  # the round itself failed (e.g. a reward that never separates samples)
                raise (getattr(e, "cause", None) or e) from None
            if dead:  # a replacement draws the round when it evaluates
                self.pool.rebuild(dead, self.records, why=f"lost while drawing the round of step {step}")
            stats = [drawn[w] for w in sorted(drawn) if drawn[w]]
            if stats:
                info["round"] = stats[0]
        return StepCall(step, None, info)

    def step(self, closure: StepCall | None = None) -> float:
        """Evaluate the step's points on the workers, then have every worker apply the update; returns the mean value.

        The workers draw the step's batch themselves (`closure` is never called here); a StepCall's info gains
        the number of live workers."""
        t = self.step_count
        if self.size() > 1 and self.check_every and t % self.check_every == 0:
            self.check()  # before the step's values are measured, so a drifted copy never scores a point
        scored = self._evaluate(t)
        values = group_values(combine(self.n_points, scored), self.groups)  # what every worker is told
        calls = {w: (self.pool.call(w, "tell", t, values), self.timeout_s) for w in self.pool.live()}
        try:
            told, dead = self.pool.gather(calls)
        except Exception as e:  # e.g. NonFiniteObjective after too many NaN steps: same state everywhere, then raise
            self.pool.reset(self.pool.live(), self.records, why=f"update of step {t} failed")
            raise (getattr(e, "cause", None) or e) from None
        if not told:
            raise RuntimeError(f"every worker died while applying step {t}")
        record = told[min(told)]
        differ = [w for w, r in told.items() if r != record]  # a replica that computed another update has drifted
        self.records.append(record)
        if self.log is not None:
            self.log.append(record)
        if dead:
            self.pool.rebuild(dead, self.records, why=f"lost while applying step {t}")
        if differ:
            self.pool.reset(differ, self.records, why=f"computed another update in step {t}")
        self.last = result_of(record)
        if isinstance(closure, StepCall):
            closure.info["workers"] = self.size()
        return self.last.value

    def _evaluate(self, t: int) -> dict[Task, dict]:
        """Scores of every task of step t; tasks of a worker that dies or hangs are re-run on another one."""
        plan = plan_step(self.n_points, self.pool.live(), self.split, pairs=any(len(g) > 1 for g in self.groups))
        reach = {w: -1 for w in self.pool.live()}  # the furthest point each worker will have visited
        for w, tasks in plan.items():
            reach[w] = max(task.point for task in tasks)
        scored: dict[Task, dict] = {}
        lost_workers: list[int] = []
        while plan:
            calls = {w: (self.pool.call(w, "evaluate", t, [tuple(x) for x in tasks]),
                         self.timeout_s * len({x.point for x in tasks})) for w, tasks in plan.items()}
            try:
                results, dead = self.pool.gather(calls)
            except Exception as e:  # the objective raised on a worker: restore every worker, name it
                cause = getattr(e, "cause", None) or e
                self.pool.reset(self.pool.live(), self.records, why=f"objective error in step {t}")
                raise ObjectiveError(f"{cause}; every worker was rebuilt to the weights before step {t}") from None
            for rows in results.values():
                scored.update((Task(*r["task"]), r) for r in rows)
            lost = sorted(task for w in dead for task in plan[w])
            for w in dead:
                reach.pop(w)
            lost_workers += dead
            plan = {}
            if lost:  # re-run on a live worker that has not walked past them, else on a rebuilt replacement
                able = [w for w in self.pool.live() if reach[w] < lost[0].point]
                if able:
                    w = max(able, key=lambda k: (reach[k], -k))
                else:
                    w = self.pool.rebuild([lost_workers.pop(0)], self.records, why=f"died in step {t}")[0]
                plan = {w: lost}
                reach[w] = lost[-1].point
                self.reruns.append({"step": t, "points": sorted({x.point for x in lost}), "lost_by": dead, "on": w})
        if lost_workers:  # replacements join before the update, so they apply it with the others
            self.pool.rebuild(lost_workers, self.records, why=f"died in step {t}")
        return scored

    def size(self) -> int:
        return len(self.pool.live())

    # --- checks, validation, state --------------------------------------------------------------------
    def states(self) -> dict[int, dict]:
        """Each worker's step, exact weight digest and fingerprint."""
        calls = {w: (self.pool.call(w, "state"), self.timeout_s) for w in self.pool.live()}
        states, dead = self.pool.gather(calls)
        if dead:
            self.pool.rebuild(dead, self.records, why="lost during a state check")
        return states

    def check(self) -> list[int]:
        """Compare the workers' weight digests; rebuild from base + trajectory any that differ. Returns them."""
        states = self.states()
        odd = self.pool.odd_ones_out({w: s["digest"] for w, s in states.items()})
        if odd:
            self.pool.reset(odd, self.records, why=f"weights differed at step {self.step_count}")
            after = {s["digest"] for s in self.states().values()}
            if len(after) != 1:
                raise RuntimeError(f"workers still differ after a rebuild from base + trajectory at step {self.step_count}")
        return odd

    def validate(self, data: Sequence[dict] | None = None) -> Measured | None:
        """The validation objective on one worker at the current weights (value, per-example values)."""
        if data is not None:
            raise ValueError("DistributedMeZO.validate scores the task's own validation rows on a worker: pass no data")
        for _ in range(2):
            w = self.pool.live()[0]
            results, dead = self.pool.gather({w: (self.pool.call(w, "validate"), self.timeout_s)})
            if not dead:
                return results[w]
            self.pool.rebuild(dead, self.records, why="lost during validation")
        raise RuntimeError("validation failed on two workers in a row")

    def fingerprint(self) -> str:
        """The summary fingerprint of the tuned weights (the same on every worker; checked)."""
        states = self.states()
        prints = {s["fingerprint"] for s in states.values()}
        if len({s["digest"] for s in states.values()}) != 1:
            self.check()
            return self.fingerprint()
        return prints.pop()

    def report(self) -> dict:
        """What a run's summary says about the weights and workers: tuned elements, live workers, rebuilds,
        re-runs and the final fingerprint (checked equal on every worker)."""
        numel = next(iter(self.states().values()))["numel"]
        return {"tuned_elements": numel, "workers": self.size(), "worker_rebuilds": self.pool.rebuilds,
                "reruns": self.reruns, "final_fingerprint": self.fingerprint()}

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.pool.close()

    def __enter__(self) -> DistributedMeZO:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
