"""Which worker scores what in one step, and how shard results become one value per evaluation point.

A task is (point, shard, shards): score evaluation point `point` on shard `shard` of `shards` equal
slices of the step's batch. split="points" spreads whole points over workers (population members,
n-SPSA directions); split="batch" gives every worker one shard of every point (data-parallel SPSA).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence


class Task(NamedTuple):
    point: int  # index into the step's candidates
    shard: int  # which slice of the batch
    shards: int  # how many slices the batch is cut into


SPLITS = ("points", "batch")


def plan_step(n_points: int, workers: Sequence[int], split: str, pairs: bool = False) -> dict[int, list[Task]]:
    """Tasks per worker id. Points go out in contiguous blocks, so a worker that finishes its block early
    is still before every later block and can take over a dead worker's later points (see driver.py).
    With `pairs` (the pairwise estimator) blocks hold whole (theta + eps z, theta - eps z) pairs."""
    if split not in SPLITS:
        raise ValueError(f"distributed.split must be one of {SPLITS}, got {split!r}")
    if not workers:
        raise RuntimeError("no live workers left to evaluate the step")
    if split == "batch":
        k = len(workers)
        return {w: [Task(p, s, k) for p in range(n_points)] for s, w in enumerate(workers)}
    unit = 2 if pairs else 1
    per = unit * math.ceil(n_points / unit / len(workers))
    plan = {w: [Task(p, 0, 1) for p in range(i * per, min(n_points, (i + 1) * per))] for i, w in enumerate(workers)}
    return {w: tasks for w, tasks in plan.items() if tasks}


def shard_of(batch: Sequence, task: Task) -> list:
    """Contiguous slice `task.shard` of `task.shards` (sizes differ by at most one, in batch order)."""
    n, k = len(batch), task.shards
    lo, hi = task.shard * n // k, (task.shard + 1) * n // k  # slice s holds examples [s n / k, (s+1) n / k)
    return list(batch[lo:hi])


def combine(n_points: int, scored: dict[Task, dict]) -> list[float]:
    """One value per point from its shard results, independent of how the batch was cut.

    With per-example values (None = does not apply) the value is fsum(present) / count: fsum rounds once,
    so any cut gives the same bits as scoring the whole batch at once. Without them the shard values are
    averaged weighted by shard size, which equals one process only for mean-like objectives.
    """
    values = []
    for p in range(n_points):
        parts = sorted((t.shard, r) for t, r in scored.items() if t.point == p)
        if not parts or len(parts) != next(t.shards for t in scored if t.point == p):
            raise RuntimeError(f"point {p} is missing shard results: have shards {[s for s, _ in parts]}")
        results = [r for _, r in parts]
        if len(results) == 1:
            values.append(results[0]["value"])
        elif all(r["per_example"] is not None for r in results):
            present = [v for r in results for v in r["per_example"] if v is not None]
            values.append(math.fsum(present) / len(present) if present else float("nan"))
        else:
            total = sum(r["n"] for r in results)
            values.append(math.fsum(r["value"] * r["n"] for r in results) / total)  # size-weighted mean
    return values


def group_values(point_values: Sequence[float], groups: Sequence[Sequence[int]]) -> list[float]:
    """The values the optimizer is told, from one value per point: `groups` (AskTell.groups) names the points
    each told value is measured from, and every point of a group carries its group's value (a pairwise
    preference is judged once per pair, on the worker that holds both sides)."""
    if any(not g for g in groups) or max((p for g in groups for p in g), default=-1) >= len(point_values):
        raise ValueError(f"groups {list(map(list, groups))} do not name points among the {len(point_values)} scored")
    return [point_values[g[0]] for g in groups]
