"""JSON-lines logs that survive a crash: an fsynced append writer and a reader that tolerates a torn last line.

A kill -9 (or a power cut) mid-write can leave the last line cut short. Readers report it (file and line
number) and ignore it without touching the file; only a writer that appends removes it, and says so.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_reported: set[tuple[str, int, int]] = set()  # (file, torn offset, file size): each torn line is reported once


class JsonlError(ValueError):
    """A line before the last one is not JSON: the file is damaged, not torn by a crash."""


@dataclass(frozen=True)
class Torn:
    """The torn last line of a log: its 1-based line number and where it starts (bytes before it are whole)."""

    path: Path
    line: int
    offset: int
    size: int  # bytes in the torn line


@dataclass
class JsonlRead:
    rows: list[dict]
    torn: Torn | None


def read_jsonl(path: str | os.PathLike, report: bool = True) -> JsonlRead:
    """Every whole line of `path` as JSON (a missing file: no rows). A last line without its newline, or one that is
    not JSON, is a torn write: returned in `torn` and reported once on stderr; an earlier bad line raises JsonlError."""
    path = Path(path)
    if not path.exists():
        return JsonlRead([], None)
    raw = path.read_bytes()
    rows: list[dict] = []
    offset, number = 0, 0
    while offset < len(raw):
        end = raw.find(b"\n", offset)
        line = raw[offset:] if end < 0 else raw[offset:end]
        number += 1
        last = end < 0 or end + 1 == len(raw)
        if line.strip() and end >= 0:  # a line without its newline is torn, even when it parses: not appended to
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError) as e:  # a JSONDecodeError's own "line 1 column 1" is of the line alone
                if not last:
                    raise JsonlError(f"{path}:{number}: not a JSON line ({e})") from None
                end = -1  # a whole but unreadable last line (e.g. zeros after a crash) is torn too
        if end < 0 and line.strip():
            torn = Torn(path, number, offset, len(raw) - offset)
            if report:
                report_torn(torn, "ignored")
            return JsonlRead(rows, torn)
        if end < 0:
            break
        offset = end + 1
    return JsonlRead(rows, None)


def report_torn(torn: Torn, what: str) -> None:
    key = (str(torn.path), torn.offset, torn.offset + torn.size)
    if key in _reported and what == "ignored":
        return
    _reported.add(key)
    print(f"blackbox-zo: warning: {torn.path}:{torn.line}: the last line is torn ({torn.size} bytes, a write cut "
          f"short by a crash): {what}", file=sys.stderr, flush=True)


def cut_torn(torn: Torn | None) -> None:
    """Remove a torn last line before appending (only a writer does this), and say so."""
    if torn is None:
        return
    with open(torn.path, "r+b") as fh:
        fh.truncate(torn.offset)
        os.fsync(fh.fileno())
    report_torn(torn, "removed before appending")


NONFINITE_NAMES = {math.inf: "Infinity", -math.inf: "-Infinity"}  # and "NaN": what float() reads back


def standard(obj: Any, spell: bool = False) -> Any:
    """`obj` with every non-finite float replaced, so json.dumps(allow_nan=False) writes standard JSON: by None (a
    missing number), or with `spell` by its name ("NaN", "Infinity", "-Infinity"), which float() reads back."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return (NONFINITE_NAMES.get(obj, "NaN")) if spell else None
    if isinstance(obj, dict):
        return {k: standard(v, spell) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [standard(v, spell) for v in obj]
    return obj


def dumps(obj: Any, spell: bool = False, **kwargs: Any) -> str:
    """Standard JSON (no bare NaN or Infinity, which other readers refuse): non-finite floats as `standard` says."""
    return json.dumps(standard(obj, spell), allow_nan=False, **kwargs)


class JsonlWriter:
    """Appends one JSON object per line; each line is flushed and fsynced before `write` returns. Non-finite
    floats are written as null, or spelled ("NaN") with `spell` where a reader needs them back (a trajectory)."""

    def __init__(self, path: str | os.PathLike, torn: Torn | None = None, spell: bool = False):
        self.path = Path(path)
        self._torn = torn
        self._fh = None
        self.spell = spell

    def write(self, obj: dict) -> None:
        if self._fh is None:
            cut_torn(self._torn)
            self._torn = None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(dumps(obj, self.spell, separators=(",", ":")) + "\n")  # one write: a crash tears only this line
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def rewrite_jsonl(path: str | os.PathLike, rows: list[dict], spell: bool = False) -> None:
    """Replace a log with `rows`, atomically (a temporary file, fsynced, renamed over it)."""
    write_atomic(path, "".join(dumps(r, spell, separators=(",", ":")) + "\n" for r in rows))


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small file so that a crash leaves the old content or the new one, never half of it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
