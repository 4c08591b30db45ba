"""Votes as a preference dataset: one JSON line per decided pair, {"prompt", "chosen", "rejected"}.

That is the format TRL's DPOTrainer reads, so the people's effort can also train a model by DPO later.
Ties and both-bad votes name no winner, so they are skipped (and counted).
"""

from __future__ import annotations

import json
from pathlib import Path

from blackbox_zo.prefer.session import VOTES
from blackbox_zo.prefer.store import VoteStore


def export_votes(run_dir: str | Path, out: str | Path) -> dict:
    """Write the JSONL file; returns counts: written, skipped ties, skipped both-bad."""
    db = Path(run_dir) / VOTES
    if not db.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {VOTES}: is it the run directory of `blackbox-zo prefer`?")
    store = VoteStore(db)
    try:
        votes = store.votes()
    finally:
        store.close()
    counts = {"written": 0, "tie": 0, "both_bad": 0}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for v in votes:
            if v["value"] == 0:  # tie or both bad: no preferred answer
                counts[v["choice"]] += 1
                continue
            chosen, rejected = (v["plus"], v["minus"]) if v["value"] > 0 else (v["minus"], v["plus"])
            fh.write(json.dumps({"prompt": v["prompt"], "chosen": chosen, "rejected": rejected}, ensure_ascii=False) + "\n")
            counts["written"] += 1
    return counts
