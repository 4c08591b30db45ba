"""The worker pool: start workers, notice dead or hung ones, and rebuild them from base + trajectory.

A rebuilt worker never receives weights: it loads the base model and replays the logged seeds and
values, so it is bitwise equal to the others. Ray's own restarts are off (max_restarts=0) because a
restarted actor has lost its weights anyway; we start a fresh one and replay.
"""

from __future__ import annotations

import time
from collections import Counter

from blackbox_zo.distributed.worker import actor_class


def is_dead(error: BaseException) -> bool:
    """True for 'the worker process is gone' (killed, crashed, node lost), as opposed to an objective error."""
    import ray.exceptions as rx

    return isinstance(error, (rx.RayActorError, rx.ActorDiedError, rx.ActorUnavailableError, rx.WorkerCrashedError))


class Pool:
    """Live workers by id; ids are never reused, so errors and logs name one process each."""

    def __init__(self, config: dict, size: int, cpus: float, gpus: float, startup_timeout_s: float):
        self.config, self.size, self.startup_timeout_s = config, size, startup_timeout_s
        self.cls = actor_class(cpus, gpus)
        self.handles: dict[int, object] = {}
        self.pids: dict[int, int] = {}
        self.next_id = 0
        self.rebuilds: list[dict] = []  # one entry per replacement: why, and how long the replay took

    def start(self) -> list[int]:
        """Start workers up to `size` (at the base weights)."""
        return self.spawn([None] * (self.size - len(self.handles)))

    def spawn(self, replacing: list[int | None]) -> list[int]:
        """Start one worker per entry, killing the worker it replaces; returns the new ids (base weights)."""
        import ray

        for old in replacing:
            if old is not None:
                self.kill(old)
        new = []
        for _ in replacing:
            wid, self.next_id = self.next_id, self.next_id + 1
            self.handles[wid] = self.cls.remote(self.config, wid)
            new.append(wid)
        try:
            pids = ray.get([self.handles[w].pid.remote() for w in new], timeout=self.startup_timeout_s)
        except ray.exceptions.ActorDiedError as e:  # the constructor raised: name its error in one line
            last = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
            raise RuntimeError(f"a worker failed to start: {last}") from None
        self.pids.update(zip(new, pids))
        return new

    def replay(self, wids: list[int], records: list[dict]) -> None:
        """Bring base-weight workers to the end of `records`, in parallel (seeds and values only)."""
        import ray

        if not wids or not records:
            return
        ray.get([self.handles[w].replay.remote(records) for w in wids], timeout=self.startup_timeout_s)

    def rebuild(self, replacing: list[int], records: list[dict], why: str) -> list[int]:
        """Replace workers by fresh ones brought to the end of `records`; logs why and how long it took."""
        t0 = time.perf_counter()
        new = self.spawn(list(replacing))
        self.replay(new, records)
        for w, old in zip(new, replacing):
            self.rebuilds.append({"worker": w, "replaces": old, "why": why, "steps": len(records),
                                  "seconds": round(time.perf_counter() - t0, 3)})
        return new

    def reset(self, wids: list[int], records: list[dict], why: str) -> None:
        """Rebuild live workers in their own processes (base weights reloaded, `records` replayed); any that
        turns out dead or hangs is replaced by a fresh process instead."""
        t0 = time.perf_counter()
        _, dead = self.gather({w: (self.call(w, "reset", records), self.startup_timeout_s) for w in wids})
        for w in wids:
            if w not in dead:
                self.rebuilds.append({"worker": w, "replaces": w, "why": why, "steps": len(records),
                                      "seconds": round(time.perf_counter() - t0, 3)})
        if dead:
            self.rebuild(dead, records, why)

    def kill(self, wid: int) -> None:
        import ray

        handle = self.handles.pop(wid, None)
        self.pids.pop(wid, None)
        if handle is not None:
            ray.kill(handle, no_restart=True)

    def live(self) -> list[int]:
        return sorted(self.handles)

    def call(self, wid: int, method: str, *args):
        return getattr(self.handles[wid], method).remote(*args)

    def gather(self, calls: dict[int, tuple[object, float]]) -> tuple[dict[int, object], list[int]]:
        """Results of one call per worker, given (ref, timeout_s) each; workers that died or ran past their
        timeout are killed and listed. An exception other than a death (an objective error) propagates."""
        import ray

        results, dead = {}, []
        now = time.monotonic()
        deadlines = {w: now + timeout for w, (_, timeout) in calls.items()}
        waiting = {w: ref for w, (ref, _) in calls.items()}
        while waiting:
            soonest = min(deadlines[w] for w in waiting)
            ready, _ = ray.wait(list(waiting.values()), num_returns=1, timeout=max(0.0, soonest - time.monotonic()))
            if not ready:
                for wid in [w for w in waiting if deadlines[w] <= time.monotonic()]:  # hung: treated as dead
                    del waiting[wid]
                    self.kill(wid)
                    dead.append(wid)
                continue
            wid = next(w for w, r in waiting.items() if r == ready[0])
            del waiting[wid]
            try:
                results[wid] = ray.get(ready[0])
            except Exception as e:
                if not is_dead(e):
                    raise
                self.kill(wid)
                dead.append(wid)
        return results, dead

    def odd_ones_out(self, digests: dict[int, str]) -> list[int]:
        """Workers whose weight digest differs from the strict majority's; all of them if there is none."""
        if len(set(digests.values())) <= 1:
            return []
        common, count = Counter(digests.values()).most_common(1)[0]
        if count * 2 <= len(digests):
            return sorted(digests)
        return sorted(w for w, d in digests.items() if d != common)

    def close(self) -> None:
        for wid in list(self.handles):
            self.kill(wid)
