"""Examples as lists of dicts: loaded from local TSV/CSV/JSONL/JSON, a `datasets` dataset (a name, a folder saved
with save_to_disk, or a Dataset), sampled k-shot, split.

Sampling uses its own `random.Random(seed)`, never global state, so a (seed, data) pair always gives the same subset.
"""

from __future__ import annotations

import csv
import json
import random
import string
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
        raise FileNotFoundError(f"{path}: no such data file" + (" (it is a directory)" if path.is_dir() else "") +
                                looked_for(path))
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


SPLIT_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")
KINDS_OF_DATA = ("a folder with train and validation files (.tsv, .csv, .jsonl or .json), a folder written by "
                 "datasets' save_to_disk, or a datasets name like 'stanfordnlp/sst2' (or 'nyu-mll/glue:sst2')")


def load_splits(data: str | Path, splits: Iterable[str] = ("train", "validation"),
                columns: Iterable[str] = ()) -> dict[str, list[dict]]:
    """{split: rows} from a folder of SPLIT.tsv/.csv/.jsonl/.json files, a folder saved by `datasets`
    (load_from_disk), or a `datasets` name, "org/name" or "org/name:config" (load_dataset: the hub or its cache).
    Anything else that is not an existing path fails as a missing folder, without asking the network.

    Every row must have every one of `columns`: a missing one fails here naming the file, not mid-run."""
    splits, columns = list(splits), list(columns)
    path = Path(data).expanduser()
    if path.is_dir() and not (path / "dataset_dict.json").is_file():
        found = {}
        for split in splits:
            file = split_file(path, split)
            found[split] = load_examples(file)
            require_columns(found[split], columns, str(file))
        return found
    if path.is_dir():
        return dataset_splits(load_from_disk(path), splits, str(path), columns)
    if path.exists():
        raise ValueError(f"data {path} is a file: pass " + KINDS_OF_DATA)
    name = str(data).partition(":")[0]
    if name.startswith((".", "/", "~")) or name.count("/") != 1 or "\\" in name:  # not "org/name": a missing path
        raise FileNotFoundError(f"data {path} does not exist{looked_for(path)}: pass "
                                f"{KINDS_OF_DATA.replace('train and', 'train.tsv and', 1)}")
    return dataset_splits(load_dataset_named(str(data)), splits, str(data), columns)


def split_file(folder: Path, split: str) -> Path:
    """FOLDER/SPLIT with the first suffix that exists (.tsv, .csv, .jsonl, .json)."""
    for suffix in SPLIT_SUFFIXES:
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    raise FileNotFoundError(f"{(folder / split).absolute()}.tsv not found (nor .csv, .jsonl, .json): data must be "
                            + KINDS_OF_DATA)


def looked_for(path: Path) -> str:
    """For a relative path: the absolute one that was tried, and how a config's relative paths are read."""
    if path.is_absolute():
        return ""
    return (f" (looked for {path.absolute()}; in a config file a relative path is read relative to the config file's "
            "folder, then to the working folder)")


def load_from_disk(path: Path):
    import datasets

    return datasets.load_from_disk(str(path))


def load_dataset_named(name: str):
    """datasets.load_dataset(name[, config]): from the hub, or its cache when offline; unreachable says what to do."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"data {name!r}: loading a datasets name needs the `datasets` package (pip install datasets)") from None
    repo, _, config = name.partition(":")
    try:
        return datasets.load_dataset(repo, config or None)
    except ConnectionError as e:
        raise ValueError(f"data {name!r}: the Hugging Face hub cannot be reached ({e}) and the dataset is not in the "
                         "local datasets cache: where there is a network, run datasets.load_dataset("
                         f"{repo!r}{', ' + repr(config) if config else ''}).save_to_disk(FOLDER) and pass data: FOLDER"
                         ) from None
    except FileNotFoundError as e:  # DatasetNotFoundError is one
        raise ValueError(f"data {name!r} is not a local folder, and not a dataset on the hub ({e})") from None


def dataset_splits(dataset: Any, splits: list[str], where: str, columns: list[str]) -> dict[str, list[dict]]:
    """Rows of each split of a DatasetDict; a missing split names the ones there are, a missing column the split."""
    missing = [s for s in splits if s not in dataset]
    if missing:
        raise ValueError(f"data {where} has no split {missing[0]!r} (it has {', '.join(dataset)})")
    found = {s: load_examples(dataset[s]) for s in splits}
    for split, rows in found.items():
        require_columns(rows, columns, f"data {where}, split {split!r}")
    return found


def template_columns(template: str) -> list[str]:
    """The columns a format-string template reads: "{sentence} It was" -> ["sentence"]."""
    return [field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field]


def require_columns(rows: list[dict], columns: Iterable[str], where: str) -> None:
    """Every row has every column; the first missing one fails naming the file (or dataset), the column and the row."""
    columns = list(dict.fromkeys(columns))
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"{where}: row {i + 1} has no column {missing[0]!r} (it has {', '.join(map(str, row)) or 'none'}; "
                             f"the task reads {', '.join(columns)})")


def json_line(path: Path, number: int, line: str) -> dict:
    """One JSONL row; a line that is not a JSON object fails naming the file and its 1-based line number."""
    try:
        row = json.loads(line.strip())  # stripped, so the error's column counts within the line
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
    return row


def kshot(examples: Iterable[dict], k: int, seed: int, label_key: str = "label", asked: str | None = None) -> list[dict]:
    """k examples per class (MeZO's k=16/512 setting), drawn without replacement, classes in sorted order.

    Raises if a class has fewer than k examples, naming the setting that asked for k (`asked`, default "k=K").
    Labels group by str() ("1" and 1 are one class).
    """
    if k < 1:  # e.g. val_size=1 over two classes: 0 per class, a run that silently never validates
        raise ValueError(f"{asked or f'k={k}'}: need at least 1 example per class")
    by_class: dict[str, list[dict]] = defaultdict(list)
    for ex in examples:
        by_class[str(ex[label_key])].append(ex)
    rng = random.Random(seed)
    out: list[dict] = []
    for label in sorted(by_class):
        pool = by_class[label]
        if len(pool) < k:
            raise ValueError(f"class {label!r} has {len(pool)} examples, fewer than {asked or f'k={k}'}")
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
