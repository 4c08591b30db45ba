"""The checks before a run logs into a trajectory file, written once for every face (MeZO, AskTell, CMA, Ray).

A log that already holds steps is continued only on request (resume), and only from the base weights it was
recorded from; the header then must describe the same run. What comes back is the steps to replay first.
"""

from __future__ import annotations

from blackbox_zo.step.trajectory import Trajectory, TrajectoryError

LEGACY = {"evaluate": "inplace"}  # header keys older logs lack, with the value those runs had


def attach_log(log: Trajectory, config: dict, fingerprint: str | None, resume: bool) -> list[dict]:
    """Write the header of a new log, or check an existing one against `config` and the base `fingerprint`;
    returns the logged steps (to replay before the next step is appended)."""
    if log.records and not resume:
        raise TrajectoryError(f"{log.path} already holds {len(log.records)} steps: pass resume=True or a new path")
    if log.header is not None:
        if log.header["base_fingerprint"] != fingerprint:
            raise TrajectoryError(f"{log.path}: these weights are not the base weights the log was recorded from "
                                  f"(fingerprint {fingerprint} != {log.header['base_fingerprint']})")
        for key, value in LEGACY.items():  # a log from before the key was recorded resumes as that run did
            if key in config:
                log.header["config"].setdefault(key, value)
    log.start(config, fingerprint)
    return list(log.records)
