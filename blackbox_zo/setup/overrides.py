"""`run --set key=value`: dotted config keys set from the command line, each value read as YAML.

The result is checked as the config file is, so `--set train.stepz=3` fails as `train: {stepz: 3}` would.
"""

from __future__ import annotations

import copy
from typing import Any

from blackbox_zo.setup.config import ConfigError


def parse_set(item: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 1e-4): the value as YAML reads it (numbers, true/false, lists, null)."""
    import yaml

    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {item!r}: expected key=value with a dotted config key, e.g. --set optim.lr=1e-4")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from None
    return parts, value


def apply_sets(data: dict, items: list[str]) -> dict:
    """A copy of the config data with every `key=value` of `items` set, in order (a later one wins)."""
    data = copy.deepcopy(data)
    for item in items:
        parts, value = parse_set(item)
        here = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(here.get(part), dict):
                if part in here and here[part] is not None:
                    raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is not a section")
                here[part] = {}
            here = here[part]
        here[parts[-1]] = value
    return data
