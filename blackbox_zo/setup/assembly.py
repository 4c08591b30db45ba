"""Task and model assembly for a run: the objective factory's task, and the model, space and LM a config tunes.

`run`, `eval`/`export` and the Ray workers all build a run's parts here, so they build them the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from blackbox_zo.setup.compatibility import check_config, check_task
from blackbox_zo.setup.config import ConfigError, RunConfig
from blackbox_zo.setup.traits import with_traits
from blackbox_zo.step.spec import Spec

# What a factory may raise for bad input (a missing file, a bad row, an unknown task): reported as config errors.
FACTORY_INPUT_ERRORS = (OSError, ValueError, KeyError)


def load_factory(spec: str, module_dir: str | None = None):
    """Import 'module:function' named by the config (the objective side stays outside the engine).

    The config file's folder (`module_dir`) is searched first, then the working folder, as `python -m` does, so
    `factory: mymodule:fn` finds mymodule.py beside the config from any folder. A file there named like one of our
    packages (objectives.py) would hide it: that is an error, not a silent swap.
    """
    module_name, _, attr = spec.partition(":")
    folders = list(dict.fromkeys(str(Path(f).resolve()) for f in (module_dir, os.getcwd()) if f))
    for folder in folders:
        check_no_shadow(Path(folder))
    for folder in reversed(folders):  # the config's folder ends up first
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        where = " or ".join(folders)
        raise ConfigError(f"objective.factory: cannot import module {module_name!r} ({e}; looked in {where} "
                          "and the installed packages)") from e
    if not callable(getattr(module, attr, None)):
        raise ConfigError(f"objective.factory: module {module_name!r} has no function {attr!r}")
    return getattr(module, attr)


OWN_PACKAGES = ("objectives", "blackbox_zo")  # installed side by side: a same-named module in a search folder hides them


def check_no_shadow(folder: Path) -> None:
    """Refuse a module in `folder` named like one of our packages unless it is that package itself (a checkout)."""
    installed = Path(__file__).resolve().parents[2]  # the folder holding blackbox_zo/ and objectives/
    checkout = all((folder / n / "__init__.py").exists() for n in OWN_PACKAGES)  # a copy of this project: its own code
    for name in OWN_PACKAGES:
        for candidate in (folder / f"{name}.py", folder / name):  # a folder hides it only as a regular package
            if candidate.suffix == ".py" and candidate.exists() or (not checkout and (
                    (candidate / "__init__.py").exists() and candidate.resolve() != installed / name)):
                raise ConfigError(f"{candidate} has the name of the built-in package {name!r} and would hide it "
                                  "when the objective factory is imported: rename it")


def check_factory_args(factory, spec: str, args: dict) -> None:
    """Name a key of objective.args that the factory does not take, like any other unknown config key."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(args) - set(takes))
    if unknown:
        raise ConfigError(f"unknown key objective.args.{unknown[0]}: {spec} takes {', '.join(takes) or 'no arguments'}")
    missing = [n for n, p in params.items() if p.default is p.empty and n in takes and n not in args]
    if missing:
        raise ConfigError(f"missing key objective.args.{missing[0]} (needed by {spec})")


def build_task(cfg: RunConfig) -> dict:
    """Call the objective factory: it returns {'train', 'val', 'objective', optional 'val_objective'}; the task
    comes back with the objectives' traits (with_traits), checked against the config (check_task)."""
    spec, args = cfg.objective.factory, cfg.objective.args
    factory = load_factory(spec, cfg.objective.module_dir)
    check_factory_args(factory, spec, args)
    try:
        task = factory(**args)
    except FACTORY_INPUT_ERRORS as e:  # e.g. a missing data folder or a corrupt JSONL line, named by the factory
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)  # str(KeyError) adds quotes
        raise ConfigError(f"objective.factory {spec}: {type(e).__name__}: {message}") from e
    if not isinstance(task, dict):
        raise ConfigError(f"objective.factory {spec} returned {type(task).__name__}, expected a dict with "
                          "'train', 'objective' and optionally 'val', 'val_objective'")
    missing = {"train", "objective"} - set(task)
    if missing:
        raise ConfigError(f"objective.factory {spec} returned no {sorted(missing)}")
    if not task["train"]:
        raise ConfigError(f"objective.factory {spec} returned an empty 'train' list")
    task = with_traits(task)
    check_task(cfg, task["traits"])
    return task


def check_before_loading(cfg: RunConfig) -> None:
    """What a run can check before data or weights load: the rules between config sections (check_config), the
    model (check_model) and train.tensorboard's package."""
    check_config(cfg)
    check_model(cfg)
    if cfg.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard: true needs the tensorboard package: pip install 'blackbox_zo[tensorboard]' "
                          "(or pip install tensorboard), or set train.tensorboard: false")


def step_settings(cfg: RunConfig, task: dict) -> tuple[Spec, Any]:
    """The run's Spec (its `optim` section, maximize taken from the objective's traits) and the compare a pairwise
    objective brings (it judges its own outputs; else None): the driver and every Ray worker build their optimizer
    from these."""
    traits = task["traits"]
    return replace(cfg.optim, maximize=traits.maximize), task["objective"] if traits.pairwise else None


def check_model(cfg: RunConfig) -> None:
    """model.name is 'embedded', a local model directory or a hub id found in the HF cache or on the hub, and
    model.device exists here: checked before data or weights load."""
    from blackbox_zo.lm.loading import EMBEDDED_NAMES, check_hub_model, looks_like_path, resolve_model_dir

    if cfg.model.name not in EMBEDDED_NAMES:
        if looks_like_path(cfg.model.name) and not Path(cfg.model.name).expanduser().exists():
            raise ConfigError(f"model.name: the model directory {cfg.model.name} does not exist")
        try:
            source = resolve_model_dir(cfg.model.name)
            if isinstance(source, str) and cfg.model.backend == "transformers":  # vLLM resolves hub ids itself
                check_hub_model(source)
        except ValueError as e:
            raise ConfigError(f"model.name: {e}") from None
    check_device(cfg.model.device)


def check_device(device: str) -> None:
    """model.device names a device this torch build has: 'cuda' on a CPU-only torch fails here, not mid-load."""
    import torch

    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA GPU"
        raise ConfigError(f"model.device: {device!r} but this machine has {build}: use 'cpu', or install a CUDA torch")
    index = device.partition(":")[2]
    if kind == "cuda" and index.isdigit() and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"model.device: {device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"model.device: {device!r} but MPS is not available here: use 'cpu'")
    try:
        torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"model.device: {device!r} is not a device ({e})") from None


def full_space(model: Any, s: Any, extra: dict) -> Any:
    """The ParamSpace over the weights that space.include / space.exclude select; none selected is a config error."""
    from blackbox_zo.weights.params import ParamSpace

    try:
        return ParamSpace(model, include=s.include or None, exclude=s.exclude or None, **extra)
    except ValueError as e:
        if "empty parameter set" not in str(e):
            raise
        names = [n for n, _ in model.named_parameters()]
        raise ConfigError(f"space.include {s.include or 'all'} / space.exclude {s.exclude or 'none'} selects none of "
                          f"the model's {len(names)} parameters (regexes searched in names like {names[0]!r}, "
                          f"{names[len(names) // 2]!r})") from None


@dataclass
class Loaded:
    model: Any  # the module the objective runs (a peft / prefix wrapper when the space is not "full")
    tokenizer: Any
    space: Any
    lm: Any


def load_tuned(cfg: RunConfig) -> Loaded:
    """Base model + the parameter space the config tunes + the LM wrapper objectives call."""
    from blackbox_zo.lm import TransformersLM, load_model
    from blackbox_zo.lm.trunk import TrunkCache, trunk_start

    if cfg.model.backend == "vllm":
        from blackbox_zo.vllm.backend import VLLMBackend

        if cfg.space.kind != "full" or cfg.space.include or cfg.space.exclude:
            raise ConfigError("model.backend 'vllm' tunes all weights: use space.kind 'full' without include/exclude")
        if cfg.space.mask_density or cfg.space.blockwise or cfg.space.subspace:
            raise ConfigError("model.backend 'vllm' supports neither space.mask_density, space.blockwise nor space.subspace")
        if cfg.space.evaluate == "batched":  # no hooks inside vLLM's workers: each point moves the weights there
            raise ConfigError("model.backend 'vllm' perturbs the weights in place: space.evaluate must be 'auto' or 'inplace'")
        backend = VLLMBackend(cfg.model.name, noise=cfg.space.noise, dtype=cfg.model.dtype)
        return Loaded(None, None, backend, backend)
    model, tok = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.model.device)
    s = cfg.space
    # evaluate is resolved by the space (weights.backend.resolve_evaluate): auto batches low-rank and the small spaces
    extra = {"noise": s.noise, "mask_density": s.mask_density, "blockwise": s.blockwise, "evaluate": s.evaluate}
    if s.kind == "lora":
        from blackbox_zo.weights.spaces import lora_space

        model, space = lora_space(model, r=s.lora_r, alpha=s.lora_alpha, **extra)
    elif s.kind == "prefix":
        from blackbox_zo.weights.spaces import prefix_space

        model, space = prefix_space(model, tok, num_tokens=s.prefix_tokens, **extra)
    elif s.kind == "steer":
        from blackbox_zo.weights.steering import steering_space

        model, space = steering_space(model, tok, layers=s.steer_layers or None, **extra)
    else:
        space = full_space(model, s, extra)
    if s.subspace:  # theta = theta0 + A z: the optimizer tunes the subspace's z
        from blackbox_zo.weights.subspace import subspace

        try:
            space = subspace(space, dim=s.subspace, seed=s.subspace_seed)
        except ValueError as e:
            raise ConfigError(f"space.subspace: {e}") from None
    start = trunk_start(model, space.tensors.values())  # layers below the tuned ones: their outputs are cached
    trunk = TrunkCache(model, start, strict=False) if start else None
    return Loaded(model, tok, space, TransformersLM(model, tok, batch_size=cfg.model.batch_size, trunk_cache=trunk))
