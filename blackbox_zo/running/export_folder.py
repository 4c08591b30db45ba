"""An export's folder written beside its target, fsynced, and renamed into place: never seen half-written.

A kill -9 at any moment leaves the target as it was (absent, or the earlier export) or the new export, complete;
what it leaves beside it (`.NAME.partial-PID`, or `.NAME.old-PID` between the two renames of --force) is ours,
and the next export of that target removes it (or puts the earlier export back), saying so.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable

from blackbox_zo.setup.guard import EXPORT_MARKER

PARTIAL_MARKER = ".blackbox_zo_partial"  # written first into every temp folder: only such folders are removed


def partial_dir(out: Path) -> Path:
    """A new, empty temp folder in out's parent (same filesystem, so the final rename is atomic), marked as ours."""
    temp = out.parent / f".{out.name}.partial-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(temp)  # not mkdtemp: its 0700 would make the export unreadable to others
    (temp / PARTIAL_MARKER).write_text("an export being written; removed by the next export of this target\n")
    return temp


def say(message: str) -> None:
    print(f"blackbox-zo: {message}", file=sys.stderr, flush=True)


def clean_stale(out: Path) -> None:
    """What a killed export of `out` left beside it: partial folders removed, an earlier export put back or removed.

    Only called under the export lock of `out`, so no live export is writing these."""
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not (old / EXPORT_MARKER).is_file():
            say(f"warning: {old} is not an export of ours (no {EXPORT_MARKER}): left as it is")
        elif out.exists():
            shutil.rmtree(old)
            say(f"removed {old}, the earlier export a killed --force left (the new one is in {out})")
        else:
            os.replace(old, out)
            say(f"put back {out}: a killed --force had moved the earlier export to {old}")
    for temp in sorted(out.parent.glob(f".{out.name}.partial-*")):
        if (temp / PARTIAL_MARKER).is_file() or (temp / EXPORT_MARKER).is_file():  # ours, being written or written
            shutil.rmtree(temp)
            say(f"removed {temp}, the partial folder of a killed export")
        elif temp.is_dir() and not any(temp.iterdir()):
            temp.rmdir()
        else:
            say(f"warning: {temp} is not a partial export of ours (no {PARTIAL_MARKER}): left as it is")


def finish(temp: Path) -> None:
    """Every file readable as a plain write would make it (0644 under umask 022, not safetensors' 0600), on disk."""
    umask = os.umask(0)
    os.umask(umask)
    (temp / PARTIAL_MARKER).unlink()  # the export marker, written last, says the folder is ours from here on
    for folder, dirs, files in os.walk(temp):
        os.chmod(folder, 0o777 & ~umask)
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, 0o666 & ~umask)
            fsync(path, os.O_RDONLY)
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~umask)
    for folder, _, _ in os.walk(temp, topdown=False):
        fsync(folder, os.O_RDONLY | os.O_DIRECTORY)


def fsync(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp: Path, out: Path, check: Callable[[], None]) -> None:
    """Rename the finished `temp` to `out`; an earlier export there is moved aside first and removed after.

    `check` (the guard) runs right before: whatever appeared in `out` while the export was written is refused,
    never deleted."""
    finish(temp)
    check()
    old = None
    if out.is_dir() and any(out.iterdir()):  # the guard allowed it: an earlier export of ours
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(temp, out)  # an empty `out` is replaced too (POSIX renames over an empty folder)
    fsync(out.parent, os.O_RDONLY | os.O_DIRECTORY)
    if old is not None:
        shutil.rmtree(old)


def write_beside(out: Path, write: Callable[[Path], None], check: Callable[[], None]) -> Path:
    """`write(temp)` into a temp folder beside `out`, then publish it; on any failure the temp folder goes."""
    temp = partial_dir(out)
    try:
        write(temp)
        publish(temp, out, check)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out
