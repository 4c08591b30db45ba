"""The preference config: which model, which prompts, how completions are sampled, and the step settings.

Plain data checked before any model is loaded; unknown or mistyped keys fail with the dotted key named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from blackbox_zo.setup.config import MAX_BATCH, ConfigError, ModelConfig, SpaceConfig, build, check_floats, read_config_file
from blackbox_zo.step.spec import Spec


@dataclass
class GenerationSection:
    max_new_tokens: int = 48
    temperature: float = 0.7  # 0 = greedy; both sides of a pair always share the sampling seed
    top_p: float = 0.95


@dataclass
class WinRateSection:
    """Optional proxy for progress: a judge compares tuned and base completions of held-back prompts."""

    judge: str = ""  # "module:function" -> a judge (compare_batch / compare) or a reward f(prompts, completions)
    args: dict = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    samples: int = 1  # completions per held-back prompt (different sampling seeds)


@dataclass
class PreferConfig:
    prompts: list[str]
    model: ModelConfig = field(default_factory=ModelConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    optim: Spec = field(default_factory=lambda: Spec(estimator="pairwise"))  # the step settings; estimator: pairwise
    prompts_per_direction: int = 2  # k: pairs per direction per step; a direction's preference = mean of k votes
    steps: int = 0  # stop offering pairs after this many steps (0 = no limit)
    generation: GenerationSection = field(default_factory=GenerationSection)
    winrate: WinRateSection | None = None
    instructions: str = "Which answer is better?"
    lease_seconds: float = 600.0  # a pair handed to one annotator is hidden from others this long
    output: str = "runs/prefer"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def directions(self) -> int:
        return self.optim.n

    @property
    def seed(self) -> int:
        return self.optim.seed


def load_prefer_config(path_or_data: str | Path | dict) -> PreferConfig:
    """Parse YAML/JSON (by suffix) or take a dict, and validate it completely."""
    data = read_config_file(path_or_data)  # names the file in every reading error; bounds YAML aliases
    check_floats(data)  # lease_seconds: .nan made every /api/next a 500
    cfg = build(PreferConfig, pairwise_optim(data))
    check_floats(cfg.to_dict())
    check(cfg)
    return cfg


def pairwise_optim(data):
    """The config with its `optim` section read as a pairwise Spec: `prefer` sets the estimator itself."""
    if not isinstance(data, dict):
        return data
    optim = data.get("optim", {})
    if isinstance(optim, dict):
        for key, own in (("estimator", "pairwise"), ("maximize", False)):  # a written config holds prefer's own values
            if key in optim and optim[key] != own:
                raise ConfigError(f"optim.{key}: set by `prefer` itself (the pairwise estimator maximises preference); "
                                  "remove it")
        data = {**data, "optim": {**optim, "estimator": "pairwise"}}
    return data


def check(cfg: PreferConfig) -> None:
    """Value checks the types alone do not catch."""
    if not cfg.prompts or not all(isinstance(p, str) and p.strip() for p in cfg.prompts):
        raise ConfigError("prompts: expected a non-empty list of non-empty strings")
    if cfg.prompts_per_direction < 1:
        raise ConfigError(f"prompts_per_direction: must be >= 1, got {cfg.prompts_per_direction}")
    if cfg.steps < 0:
        raise ConfigError(f"steps: must be >= 0 (0 = no limit), got {cfg.steps}")
    if cfg.lease_seconds <= 0:
        raise ConfigError(f"lease_seconds: must be > 0, got {cfg.lease_seconds}")
    if not 1 <= cfg.model.batch_size <= MAX_BATCH:
        raise ConfigError(f"model.batch_size must be between 1 and {MAX_BATCH}, got {cfg.model.batch_size!r}")
    spec = cfg.optim  # keys, types and values checked by Spec as the config was built
    if not spec.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {spec.lr!r}")
    if spec.optimizer == "conservative":
        raise ConfigError("optim.optimizer: 'conservative' re-evaluates the objective after each update; people cannot")
    g = cfg.generation
    if g.max_new_tokens < 1 or g.temperature < 0 or not 0 < g.top_p <= 1:
        raise ConfigError(f"generation: need max_new_tokens >= 1, temperature >= 0, 0 < top_p <= 1; got {asdict(g)}")
    if cfg.winrate is not None:
        w = cfg.winrate
        if ":" not in w.judge:
            raise ConfigError(f"winrate.judge must be 'module:function', got {w.judge!r}")
        if not w.prompts or w.samples < 1:
            raise ConfigError("winrate: needs a non-empty prompts list and samples >= 1")
    if cfg.model.backend != "transformers":
        raise ConfigError("model.backend: `prefer` generates in-process; use 'transformers'")
