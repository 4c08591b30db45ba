"""Reward functions with TRL's signature `f(prompts, completions, **columns) -> list[float | None]`, and sums of them.

A reward may return None for an example it does not apply to (as in TRL); that example is left out of its mean.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .base import ObjectiveError, Score, check_values, mean_score
from .generation import CompletionObjective, Generation

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM

RewardFn = Callable[..., Any]  # (prompts, completions, **columns) -> list[float | None] (or awaitable)
_NOT_COLUMNS = ("prompt", "completion", "completion_ids")  # TRL passes every other column by name


def columns(batch: list[dict]) -> dict[str, list]:
    """Dataset columns as keyword arguments: {"label": [...], "answer": [...]} for each key of the batch."""
    keys = [k for k in batch[0] if k not in _NOT_COLUMNS] if batch else []
    return {k: [ex.get(k) for ex in batch] for k in keys}


def _resolve(result: Any) -> Any:
    """Await a coroutine from an async reward; from inside a running loop, on a helper thread."""
    if not inspect.isawaitable(result):
        return result
    async def wait() -> Any:
        return await result
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}
    def target() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def call_reward(fn: RewardFn, prompts: list[str], completions: list[str], batch: list[dict]) -> Any:
    """Call `fn` the way TRL does; `async def` rewards are awaited."""
    return _resolve(fn(prompts=prompts, completions=completions, **columns(batch)))


class Reward(CompletionObjective):
    """Generate a completion per prompt and score the batch with a TRL-style reward function."""

    def __init__(self, fn: RewardFn, *, template: Any = None, generation: Generation | None = None,
                 name: str | None = None, maximize: bool = True, kl: float = 0.0, reference: LM | None = None) -> None:
        self.fn, self.template, self.maximize = fn, template, maximize
        self.use_reference(reference, kl)  # reward - kl x KL-hat against pi_0 = reference (objectives.kl)
        self.generation = generation or Generation()
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def rewards(self, batch: list[dict], completions: list[str]) -> list[float | None]:
        result = call_reward(self.fn, self.prompts(batch), completions, batch)
        return check_values(self.name, result, len(batch), allow_none=True, what="rewards")

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        return mean_score(self.name, self.rewards(batch, outputs))


class WeightedSum(CompletionObjective):
    """r[i] = sum_j w_j * r_j[i] over the rewards that apply to example i (TRL's nansum rule).

    Generates once (with `generation`, default the first reward's) and lets every reward score the same
    completions. An example to which no reward applies is None and is left out of the mean.
    """

    def __init__(self, rewards: Sequence[CompletionObjective], weights: Sequence[float] | None = None, *,
                 generation: Generation | None = None, name: str = "weighted_sum", kl: float = 0.0,
                 reference: LM | None = None) -> None:
        if not rewards:
            raise ValueError("WeightedSum needs at least one reward")
        weights = [1.0] * len(rewards) if weights is None else [float(w) for w in weights]
        if len(weights) != len(rewards) or not all(math.isfinite(w) for w in weights):
            raise ValueError(f"need one finite weight per reward, got {weights} for {len(rewards)} rewards")
        if any(not r.maximize for r in rewards):
            raise ValueError("WeightedSum adds rewards to maximise; negate the weight of a loss instead")
        self.components, self.weights, self.name = list(rewards), weights, name
        self.template = rewards[0].template
        self.generation = generation or rewards[0].generation
        self.use_reference(reference, kl)  # one brake on the sum (the components' own brakes do not apply)

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        parts = [r.score(batch, outputs) for r in self.components]
        per: list[float | None] = []
        for i in range(len(batch)):
            terms = [w * p.per_example[i] for w, p in zip(self.weights, parts) if p.per_example[i] is not None]
            per.append(math.fsum(terms) if terms else None)
        return mean_score(self.name, per, {"components": {p.name: p.value for p in parts}})


class VaderPositivity:
    """Reward = VADER compound sentiment of the completion, in [-1, 1] (positive text scores high)."""

    __name__ = "vader_positivity"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
        return [self.analyzer.polarity_scores(c)["compound"] for c in completions]


def vader_reward(*, template: Any = None, generation: Generation | None = None, kl: float = 0.0,
                 reference: LM | None = None) -> Reward:
    """A ready-made positivity reward (the classic "make the review positive" example)."""
    return Reward(VaderPositivity(), template=template, generation=generation, name="vader_positivity", kl=kl,
                  reference=reference)


class EvaluateMetric(CompletionObjective):
    """Score completions with any Hugging Face `evaluate` module object the user passes in.

    Load it from a local path: the hub is unreachable here, so `evaluate.load("accuracy")` fails;
    `evaluate.load("/path/to/metrics/accuracy")` (a folder with accuracy.py) works. The value is
    `module.compute(predictions=..., references=...)[result_key]` over the whole batch; with
    per_example=True each example is also computed alone (one compute call per example).
    """

    def __init__(self, module: Any, *, reference_key: str = "reference", result_key: str | None = None,
                 prediction: Callable[[str], Any] | None = None, template: Any = None,
                 generation: Generation | None = None, per_example: bool = False, maximize: bool = True,
                 name: str | None = None, kl: float = 0.0, reference: LM | None = None, **compute_kwargs: Any) -> None:
        self.module, self.reference_key, self.result_key = module, reference_key, result_key
        self.prediction = prediction or (lambda text: text)
        self.template, self.generation = template, generation or Generation()
        self.per_example, self.maximize, self.compute_kwargs = per_example, maximize, compute_kwargs
        self.name = name or str(getattr(module, "name", None) or result_key or "evaluate_metric")
        self.use_reference(reference, kl)

    def _compute(self, predictions: list, references: list, where: str) -> float:
        result = self.module.compute(predictions=predictions, references=references, **self.compute_kwargs)
        if not isinstance(result, dict) or not result:
            raise ObjectiveError(f"{self.name}: compute() returned {result!r} for {where}, expected a dict")
        key = self.result_key or next(iter(result))
        if key not in result:
            raise ObjectiveError(f"{self.name}: compute() has no {key!r} for {where}; keys: {sorted(result)}")
        return check_values(self.name, [result[key]], 1, what=f"{key} for {where}")[0]

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        preds = [self.prediction(o) for o in outputs]
        refs = [ex[self.reference_key] for ex in batch]
        value = self._compute(preds, refs, "the batch")
        per = ([self._compute([p], [r], f"example {i}") for i, (p, r) in enumerate(zip(preds, refs))]
               if self.per_example else [None] * len(batch))
        return Score(per, value, self.name)
