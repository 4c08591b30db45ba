"""One writer per run folder: an OS lock (fcntl.flock) on run.lock, held while a command writes the folder.

The kernel drops the lock when the holder exits, however it exits (kill -9 included), so no stale lock is left;
a second writer is refused at once with the holder's process id.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.run_files import LOCK as LOCK_FILE


class RunLock:
    """`with RunLock(folder):` creates the folder if needed and holds its lock; ConfigError if another process does."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.created_folder = False  # True when this lock made the folder (a failed start may remove it again)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"output {self.folder} is a file, not a run folder")
        self.created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        had_lock = self.path.exists()
        try:
            self._fd = hold(self.path, f"{self.folder} is being written by process {{holder}} (a run, --resume or "
                            "prefer server): wait for it to finish or stop it; one writer per run folder")
        except OSError:  # e.g. a full disk: no empty run.lock (nor a folder of nothing but it) is left behind
            if not had_lock:
                self.path.unlink(missing_ok=True)
            if self.created_folder:
                self.folder.rmdir()
            raise
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def hold(path: Path, busy: str) -> int:
    """The descriptor of `path` (created), flocked and holding this process id; ConfigError(`busy` with {holder})
    when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(busy.format(holder=holder)) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the second writer's message
    except OSError:
        os.close(fd)
        raise
    return fd


class ExportLock:
    """`with ExportLock(out):` one export into `out` at a time, through `.NAME.export.lock` beside it (removed after).

    Beside, not inside: `out` may not exist yet, and a file of ours inside it would make it look non-empty."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.path = self.out.parent / f".{self.out.name}.export.lock"
        self._fd: int | None = None

    def __enter__(self) -> ExportLock:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        busy = f"--out {self.out} is being written by another export (process {{holder}}): wait for it to finish"
        for _ in range(3):  # a holder that just removed the file leaves our descriptor on a lost inode: open again
            fd = hold(self.path, busy)
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self._fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)
        raise ConfigError(busy.format(holder="?"))

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: a later export creates a new file
            os.close(self._fd)
            self._fd = None
