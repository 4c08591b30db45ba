"""Examples as lists of dicts: loaded from local TSV/CSV/JSONL/JSON or a `datasets.Dataset`, sampled k-shot, split.

Sampling uses its own `random.Random(seed)`, never global state, so a (seed, data) pair always gives the same subset.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable


def load_examples(source: str | Path | Any, *, limit: int | None = None) -> list[dict]:
    """Rows of a .tsv/.csv (header line = keys), .jsonl (one object per line), .json (a list), or a Dataset.

    Values from TSV/CSV stay strings, stripped (GLUE sentences end in a space); label words match labels
    by str(), so "1" and 1 both work. A bad JSONL/JSON line fails naming the file and its line number.
    """
    if not isinstance(source, (str, Path)):
        rows = list(source.to_list()) if hasattr(source, "to_list") else [dict(r) for r in source]
        return rows[:limit] if limit is not None else rows
    path = Path(source)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file" + (" (it is a directory)" if path.is_dir() else ""))
    with path.open(newline="", encoding="utf-8") as f:
        if suffix in (".tsv", ".csv"):
            # QUOTE_NONE for TSV: GLUE files contain bare quotes inside sentences.
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else csv.DictReader(f)
            rows = [{k: v.strip() if isinstance(v, str) else v for k, v in r.items()} for r in reader]
        elif suffix == ".jsonl":
            rows = [json_line(path, number, line) for number, line in enumerate(f, start=1) if line.strip()]
        elif suffix == ".json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(rows, list):
                raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
        else:
            raise ValueError(f"{path}: unknown format {suffix!r} (use .tsv, .csv, .jsonl or .json)")
    return rows[:limit] if limit is not None else rows


def json_line(path: Path, number: int, line: str) -> dict:
    """One JSONL row; a line that is not a JSON object fails naming the file and its 1-based line number."""
    try:
        row = json.loads(line.strip())  # stripped, so the error's column counts within the line
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
    return row


def kshot(examples: Iterable[dict], k: int, seed: int, label_key: str = "label") -> list[dict]:
    """k examples per class (MeZO's k=16/512 setting), drawn without replacement, classes in sorted order.

    Raises if a class has fewer than k examples. Labels group by str() ("1" and 1 are one class).
    """
    by_class: dict[str, list[dict]] = defaultdict(list)
    for ex in examples:
        by_class[str(ex[label_key])].append(ex)
    rng = random.Random(seed)
    out: list[dict] = []
    for label in sorted(by_class):
        pool = by_class[label]
        if len(pool) < k:
            raise ValueError(f"class {label!r} has {len(pool)} examples, fewer than k={k}")
        out += rng.sample(pool, k)
    rng.shuffle(out)  # interleave classes so a minibatch prefix is not one class
    return out


def train_val_split(examples: list[dict], val: int | float, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle with `seed` and hold out `val` examples (an int) or that fraction (a float in (0, 1))."""
    n_val = int(round(val * len(examples))) if isinstance(val, float) else int(val)
    if not 0 <= n_val <= len(examples):
        raise ValueError(f"cannot hold out {n_val} of {len(examples)} examples")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [examples[i] for i in order[:n_val]]
