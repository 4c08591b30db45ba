"""Votes as a preference dataset: one JSON line per decided pair, {"prompt", "chosen", "rejected"}.

That is the format TRL's DPOTrainer reads, so the people's effort can also train a model by DPO later.
Ties and both-bad votes name no winner, so they are skipped (and counted).
"""

from __future__ import annotations

import json
from pathlib import Path

from blackbox_zo.prefer.session import VOTES
from blackbox_zo.prefer.store import VoteStore
from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.guard import refuse_inside_run
from blackbox_zo.step.jsonl import write_atomic


def export_votes(run_dir: str | Path, out: str | Path, force: bool = False) -> dict:
    """Write the JSONL file; returns counts: written, skipped ties, skipped both-bad.

    `out` must lie outside every run folder (it could replace votes.sqlite or a trajectory), and an existing file
    is replaced only with `force`; the file appears whole or not at all (written aside, then renamed)."""
    db = Path(run_dir) / VOTES
    if not db.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {VOTES}: is it the run directory of `blackbox-zo prefer`?")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give a .jsonl file name")
    refuse_inside_run(out, "--out")
    if out.exists() and not force:
        raise ConfigError(f"--out {out} exists: choose a new file name, or pass --force to replace it")
    store = VoteStore(db, readonly=True)
    try:
        votes = store.votes()
    finally:
        store.close()
    counts = {"written": 0, "tie": 0, "both_bad": 0}
    lines = []
    for v in votes:
        if v["value"] == 0:  # tie or both bad: no preferred answer
            counts[v["choice"]] += 1
            continue
        chosen, rejected = (v["plus"], v["minus"]) if v["value"] > 0 else (v["minus"], v["plus"])
        lines.append(json.dumps({"prompt": v["prompt"], "chosen": chosen, "rejected": rejected}, ensure_ascii=False) + "\n")
        counts["written"] += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "".join(lines))
    return counts
