"""Append-only JSONL log of a run: a header (config, base-weight fingerprint) and one line per step.

Each step line holds the step seed, the radius, the measured scalars, the gradient pairs and the lr (the update is
recomputed from them), so base weights + this file rebuild the tuned weights (replay) and a killed run resumes
bit-for-bit.
Lines are flushed and fsynced every step. A torn last line (kill -9 mid-write) is reported and ignored
when the log is read, and removed only when a step is appended (resume): reading never changes the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blackbox_zo.step.jsonl import JsonlError, JsonlWriter, read_jsonl

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
        self.torn = None  # a torn last line, ignored (blackbox_zo.step.jsonl.Torn)
        self._writer: JsonlWriter | None = None
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            read = read_jsonl(self.path)
        except JsonlError as e:
            raise TrajectoryError(str(e)) from None
        self.torn = read.torn
        if not read.rows:
            return
        self.header, self.records = read.rows[0], read.rows[1:]
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT:
            found = self.header.get("format") if isinstance(self.header, dict) else type(self.header).__name__
            raise TrajectoryError(f"{self.path}: not a blackbox_zo trajectory (header format={found!r})")
        if self.header.get("version") != VERSION:
            raise TrajectoryError(f"{self.path}: trajectory version {self.header.get('version')} is not {VERSION}")

    def _write_line(self, obj: dict) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path, self.torn, spell=True)  # a torn last line is removed first; a skipped
            # step's NaN values are spelled "NaN", so replay's float() reads them back
            self.torn = None
        self._writer.write(obj)

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
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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
