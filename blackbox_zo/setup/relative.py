"""Relative paths in a config file mean the file's own folder, so `blackbox-zo run` works from any folder.

`output` and the path-like `objective.args` (data, path, task, *_path, *_file, *_dir) are taken from the config's folder,
and `objective.module_dir` records that folder: the factory's module is looked up there first, then in the working
folder, also when `eval` or `export` reads the run's config.json later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PATH_ARGS = ("data", "path", "task")  # objective.args keys that may name files or folders (task: a task JSON), with
# *_path, *_file, *_dir
PATH_SUFFIXES = ("_path", "_file", "_dir")


def is_path_arg(key: str) -> bool:
    return key in PATH_ARGS or key.endswith(PATH_SUFFIXES)


def relative_to_config(data: Any, folder: Path) -> Any:
    """`data` with the config's relative paths made absolute against `folder` (the config file's folder).

    An objective.args path is rebased only when it exists there: a `datasets` name ("org/name") or a path meant
    from the working folder is left as written."""
    if not isinstance(data, dict):
        return data  # not a mapping: the config check says so
    folder = folder.resolve()
    data = dict(data)
    if isinstance(data.get("output"), str) and not Path(data["output"]).expanduser().is_absolute():
        data["output"] = str(folder / data["output"])
    objective = data.get("objective")
    if isinstance(objective, dict):
        objective = data["objective"] = dict(objective)
        args = objective.get("args")
        if isinstance(args, dict):
            objective["args"] = {k: rebase(v, folder) if is_path_arg(k) else v for k, v in args.items()}
        module_dir = objective.get("module_dir")
        objective["module_dir"] = str(folder / module_dir) if isinstance(module_dir, str) else str(folder)
    return data


def rebase(value: Any, folder: Path) -> Any:
    """`folder / value` when `value` is a relative path that exists there, else `value` unchanged."""
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    candidate = folder / value
    return str(candidate) if candidate.exists() else value
