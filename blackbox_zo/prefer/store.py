"""Votes, pairs and leases in one SQLite file in the run directory; every vote is one transaction.

The completions of a step are stored when the step starts, so a restarted server shows exactly the same
pairs, and a vote is only accepted for an unvoted pair of the current step that nobody else holds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CHOICES = ("left", "right", "tie", "both_bad")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id TEXT PRIMARY KEY, step INTEGER NOT NULL, direction INTEGER NOT NULL, slot INTEGER NOT NULL,
    prompt TEXT NOT NULL, plus TEXT NOT NULL, minus TEXT NOT NULL, swapped INTEGER NOT NULL,
    sample_seed INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS pairs_step ON pairs (step);
CREATE TABLE IF NOT EXISTS votes (
    pair_id TEXT PRIMARY KEY REFERENCES pairs (id), step INTEGER NOT NULL, annotator TEXT NOT NULL,
    time REAL NOT NULL, choice TEXT NOT NULL, swapped INTEGER NOT NULL, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (pair_id TEXT PRIMARY KEY, annotator TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS base_outputs (idx INTEGER PRIMARY KEY, prompt TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS winrate (step INTEGER PRIMARY KEY, value REAL NOT NULL, n INTEGER NOT NULL);
"""


class VoteRejected(ValueError):
    """A vote that changes nothing: `status` is the HTTP status the web app answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Pair:
    id: str
    step: int
    direction: int
    slot: int
    prompt: str
    plus: str  # completion at theta + eps z
    minus: str  # completion at theta - eps z (same prompt, same sampling seed)
    swapped: bool  # True: the left side shows `minus`

    @property
    def left(self) -> str:
        return self.minus if self.swapped else self.plus

    @property
    def right(self) -> str:
        return self.plus if self.swapped else self.minus


def vote_value(choice: str, swapped: bool) -> float:
    """The vote from the +eps side's view: +1 it won, -1 it lost, 0 tie or both bad."""
    if choice in ("tie", "both_bad"):
        return 0.0
    left_is_plus = not swapped
    return 1.0 if (choice == "left") == left_is_plus else -1.0


class VoteStore:
    """Thread-safe access to the run's votes.sqlite (one connection, one lock, WAL, full fsync)."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self._lock = threading.Lock()
        if readonly:  # export: reads, and never changes the run's files
            # trap: mode=ro still creates -wal and -shm beside a WAL database; with no -wal file no server has it open,
            # so it is opened immutable (no side files); a live server's database is read through its WAL
            live = self.path.with_name(self.path.name + "-wal").exists()
            uri = f"{self.path.resolve().as_uri()}?{'mode=ro' if live else 'immutable=1'}"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- metadata ------------------------------------------------------------------------------------
    def check_or_set_meta(self, key: str, value: dict) -> None:
        """Record `value` under `key` on first use; later it must be the same (names the first difference)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))
                return
        old = json.loads(row[0])
        for k in sorted(set(old) | set(value)):
            if old.get(k) != value.get(k):
                raise ValueError(f"{self.path} was recorded with {key}.{k}={old.get(k)!r}, this run has {value.get(k)!r}")

    def _rollback(self) -> None:
        """ROLLBACK where a transaction is still open: SQLite ends one itself on a full disk, and a second ROLLBACK
        would mask "database or disk is full" with "cannot rollback - no transaction is active"."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # --- pairs ---------------------------------------------------------------------------------------
    def add_pairs(self, pairs: list[Pair], sample_seeds: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(p.id, p.step, p.direction, p.slot, p.prompt, p.plus, p.minus, int(p.swapped), s)
                     for p, s in zip(pairs, sample_seeds)])
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def pairs(self, step: int) -> list[Pair]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, step, direction, slot, prompt, plus, minus, swapped FROM pairs WHERE step = ? "
                "ORDER BY direction, slot", (step,)).fetchall()
        return [Pair(*r[:7], bool(r[7])) for r in rows]

    # --- leases and votes ----------------------------------------------------------------------------
    def lease(self, step: int, annotator: str, seconds: float, now: float | None = None) -> Pair | None | str:
        """The pair this annotator should see: the one it already holds, else a free unvoted one (leased
        to it now). 'waiting' when every unvoted pair is held by someone else, None when all are voted."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT p.id, l.annotator, l.expires FROM pairs p LEFT JOIN leases l ON l.pair_id = p.id "
                    "WHERE p.step = ? AND p.id NOT IN (SELECT pair_id FROM votes) ORDER BY p.direction, p.slot",
                    (step,)).fetchall()
                held = [r[0] for r in rows if r[1] == annotator and r[2] > now]
                free = [r[0] for r in rows if r[1] is None or r[2] <= now]
                chosen = held[0] if held else (free[0] if free else None)
                if chosen is not None:
                    self._db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (chosen, annotator, now + seconds))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        if chosen is None:
            return "waiting" if rows else None
        return next(p for p in self.pairs(step) if p.id == chosen)

    def vote(self, pair_id: str, choice: str, annotator: str, step: int, now: float | None = None) -> float:
        """Record one vote in one transaction; returns its value. Anything invalid raises VoteRejected
        and changes nothing."""
        if choice not in CHOICES:
            raise VoteRejected(400, f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                value = self._vote_in_transaction(pair_id, choice, annotator, step, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return value

    def _vote_in_transaction(self, pair_id: str, choice: str, annotator: str, step: int, now: float) -> float:
        row = self._db.execute("SELECT step, swapped FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if row is None:
            raise VoteRejected(404, f"unknown pair id {pair_id!r}")
        pair_step, swapped = row
        if self._db.execute("SELECT 1 FROM votes WHERE pair_id = ?", (pair_id,)).fetchone():
            raise VoteRejected(409, f"pair {pair_id!r} was already voted on")
        if pair_step != step:
            raise VoteRejected(409, f"pair {pair_id!r} belongs to step {pair_step}, which is finished (now step {step})")
        lease = self._db.execute("SELECT annotator, expires FROM leases WHERE pair_id = ?", (pair_id,)).fetchone()
        if lease is not None and lease[0] != annotator and lease[1] > now:
            raise VoteRejected(409, f"pair {pair_id!r} is being voted on by another annotator")
        value = vote_value(choice, bool(swapped))
        self._db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (pair_id, step, annotator, now, choice, swapped, value))
        self._db.execute("DELETE FROM leases WHERE pair_id = ?", (pair_id,))
        return value

    def votes(self, step: int | None = None) -> list[dict]:
        """Votes (with their pair's prompt and texts), oldest first; one step or all."""
        sql = ("SELECT v.pair_id, v.step, p.direction, p.slot, v.annotator, v.time, v.choice, v.swapped, v.value, "
               "p.prompt, p.plus, p.minus FROM votes v JOIN pairs p ON p.id = v.pair_id")
        args: tuple = ()
        if step is not None:
            sql, args = sql + " WHERE v.step = ?", (step,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY v.time, v.pair_id", args).fetchall()
        keys = ("pair_id", "step", "direction", "slot", "annotator", "time", "choice", "swapped", "value",
                "prompt", "plus", "minus")
        return [dict(zip(keys, r)) for r in rows]

    def counts(self, step: int) -> tuple[int, int]:
        """(pairs, voted pairs) of a step."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM pairs WHERE step = ?", (step,)).fetchone()[0]
            voted = self._db.execute("SELECT COUNT(*) FROM votes WHERE step = ?", (step,)).fetchone()[0]
        return total, voted

    def preferences(self, step: int, directions: int) -> list[float]:
        """One preference per direction: the mean of its pairs' votes (+1: the +eps side wins)."""
        sums, counts = [0.0] * directions, [0] * directions
        for v in self.votes(step):
            sums[v["direction"]] += v["value"]
            counts[v["direction"]] += 1
        if 0 in counts:
            raise ValueError(f"step {step}: direction {counts.index(0)} has no votes yet")
        return [s / c for s, c in zip(sums, counts)]  # pref_i = mean_j vote_ij in [-1, 1]

    # --- held-back win-rate ----------------------------------------------------------------------------
    def base_outputs(self) -> list[tuple[str, str]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT prompt, text FROM base_outputs ORDER BY idx")]

    def set_base_outputs(self, rows: list[tuple[str, str]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO base_outputs VALUES (?, ?, ?)", [(i, p, t) for i, (p, t) in enumerate(rows)])
            self._db.execute("COMMIT")

    def add_winrate(self, step: int, value: float, n: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO winrate VALUES (?, ?, ?)", (step, value, n))

    def winrates(self) -> list[tuple[int, float]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT step, value FROM winrate ORDER BY step")]
