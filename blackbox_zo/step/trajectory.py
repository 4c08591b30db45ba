"""Append-only JSONL log of a run: a header (config, base-weight fingerprint) and one line per step.

Each step line holds the step seed, the measured scalars, the gradient and update pairs and the lr, so
base weights + this file rebuild the tuned weights (replay) and a killed run resumes bit-for-bit.
Lines are flushed and fsynced every step; a torn last line (kill -9 mid-write) is dropped on open.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FORMAT = "blackbox_zo.trajectory"  # a file format name, not the module path: logs from 0.1 stay readable
VERSION = 2  # 2: the header holds the Spec; records hold the radius eps


class TrajectoryError(ValueError):
    """A trajectory file that cannot be used as asked (wrong format, other config, other base weights)."""


class Trajectory:
    """Reads an existing log (if any) and appends new step records to it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.header: dict | None = None
        self.records: list[dict] = []
        if self.path.exists():
            self._read()
        self._fh = None

    def _read(self) -> None:
        raw = self.path.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]  # drop a torn last line
        lines = [ln for ln in good.decode().splitlines() if ln.strip()]
        if not lines:
            return
        try:
            self.header = json.loads(lines[0])
            self.records = [json.loads(ln) for ln in lines[1:]]
        except json.JSONDecodeError as e:
            raise TrajectoryError(f"{self.path}: not valid JSONL ({e})") from e
        if self.header.get("format") != FORMAT:
            raise TrajectoryError(f"{self.path}: not a blackbox_zo trajectory (header format={self.header.get('format')!r})")
        if self.header.get("version") != VERSION:
            raise TrajectoryError(f"{self.path}: trajectory version {self.header.get('version')} is not {VERSION}")
        if len(good) != len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(good))

    def _write_line(self, obj: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def start(self, config: dict[str, Any], fingerprint: str) -> None:
        """Write the header of a new log, or check that an existing one describes the same run."""
        if self.header is None:
            self.header = {"format": FORMAT, "version": VERSION, "config": config, "base_fingerprint": fingerprint}
            self._write_line(self.header)
            return
        differing = first_difference(self.header["config"], config)
        if differing is not None:
            key, was, now = differing
            raise TrajectoryError(f"{self.path} was recorded with {key}={was!r}, this run has {key}={now!r}")

    def append(self, record: dict) -> None:
        self.records.append(record)
        self._write_line(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def first_difference(old: dict, new: dict, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key (sorted) whose value differs between two nested dicts, with both values."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}", a, b
    return None
