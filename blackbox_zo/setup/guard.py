"""What writers may touch: never a path inside a run folder, and with --force only a folder an export made.

A run folder holds a run's log (trajectory.jsonl, or the votes of `prefer`); exports, vote exports and
checkpoints written by a user command must land outside every run folder, so they cannot replace a log.
"""

from __future__ import annotations

from pathlib import Path

from blackbox_zo.setup.config import ConfigError
from blackbox_zo.setup.run_files import MARKERS as RUN_MARKERS

# (run.lock: the first file a run or a prefer server writes, before its log)
EXPORT_MARKER = ".blackbox_zo_export"  # written into every folder `export` makes: --force may replace only those


def run_log_above(path: str | Path) -> Path | None:
    """The log (trajectory.jsonl or votes.sqlite) of the run folder that `path` is or lies inside, or None."""
    path = Path(path).expanduser().resolve()
    for folder in (path, *path.parents):
        for name in RUN_MARKERS:
            if (folder / name).is_file():
                return folder / name
    return None


def refuse_inside_run(path: str | Path, what: str) -> None:
    """ConfigError when a user-named output lies in (or is) a run folder: its logs must never be overwritten."""
    log = run_log_above(path)
    if log is not None:
        raise ConfigError(f"{what} {path} is inside the run folder {log.parent} (it holds {log.name}): writing there "
                          "could replace the run; choose a path outside any run folder")


def check_export_dir(out: str | Path, force: bool = False) -> Path:
    """An export's directory: new or empty, or (with force) one an earlier export made; never a file or a run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: export writes a directory (weights, config, tokenizer)")
    refuse_inside_run(out, "--out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"--out {out} is not empty: choose a new directory, or pass --force to replace an "
                              "earlier export there")
        if not (out / EXPORT_MARKER).is_file():
            raise ConfigError(f"--out {out} is not an earlier export (no {EXPORT_MARKER} in it): --force replaces only "
                              "a folder that export wrote; choose a new directory")
        inner = next((f for name in RUN_MARKERS for f in out.rglob(name)), None)
        if inner is not None:
            raise ConfigError(f"--out {out} holds a run ({inner}): --force will not delete it")
    return out


def mark_export(out: str | Path) -> None:
    (Path(out) / EXPORT_MARKER).write_text("written by blackbox-zo export; --force may replace this folder\n")
