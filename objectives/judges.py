"""Preference judges (rule, reward, human) and the pairwise objective the engine's comparison estimator calls.

A judge says which of two outputs is better: +1 the first, -1 the second, 0 a tie; nothing else is allowed.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from .base import ObjectiveError, check_texts, check_values, prompts_for
from .generation import Generation
from .rewards import call_reward


def check_verdict(name: str, verdict: Any, index: int) -> int:
    """Verdicts must be exactly -1, 0 or +1 (bools and floats like 0.5 are rejected)."""
    if isinstance(verdict, bool) or not isinstance(verdict, numbers.Real) or verdict not in (-1, 0, 1):
        raise ObjectiveError(f"{name}: verdict[{index}] is {verdict!r}, expected -1, 0 or +1")
    return int(verdict)


@runtime_checkable
class Judge(Protocol):
    def compare(self, prompt: str, output_a: str, output_b: str) -> int: ...
    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]: ...


class BaseJudge:
    """compare_batch defaults to one compare per example; subclasses override either."""

    name = "judge"

    def compare(self, prompt: str, output_a: str, output_b: str) -> int:
        return self.compare_batch([prompt], [output_a], [output_b])[0]

    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]:
        if not len(prompts) == len(outs_a) == len(outs_b):
            raise ObjectiveError(f"{self.name}: {len(prompts)} prompts, {len(outs_a)} and {len(outs_b)} outputs")
        return [check_verdict(self.name, self.compare(p, a, b), i)
                for i, (p, a, b) in enumerate(zip(prompts, outs_a, outs_b))]


class CallableJudge(BaseJudge):
    """Any rule `fn(prompt, output_a, output_b) -> -1 | 0 | 1` (e.g. "shorter answer wins")."""

    def __init__(self, fn: Callable[[str, str, str], int], name: str | None = None) -> None:
        self.fn, self.name = fn, name or getattr(fn, "__name__", "callable_judge")

    def compare(self, prompt: str, output_a: str, output_b: str) -> int:
        return check_verdict(self.name, self.fn(prompt, output_a, output_b), 0)


class RewardJudge(BaseJudge):
    """Prefer the output with the higher reward; |r_a - r_b| <= tol is a tie, and so is a None reward.

    `reward` is any TRL-style reward function or a RewardModel (both are called as f(prompts, completions)).
    Both sides are scored in one call, so a reward model sees one batch of 2n texts.
    """

    def __init__(self, reward: Callable[..., Any], *, tol: float = 0.0, name: str | None = None) -> None:
        self.reward, self.tol = reward, tol
        self.name = name or f"reward_judge({getattr(reward, 'name', None) or getattr(reward, '__name__', 'reward')})"

    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]:
        n = len(prompts)
        if not n == len(outs_a) == len(outs_b):
            raise ObjectiveError(f"{self.name}: {n} prompts, {len(outs_a)} and {len(outs_b)} outputs")
        r = check_values(self.name, call_reward(self.reward, list(prompts) * 2, list(outs_a) + list(outs_b), []),
                         2 * n, allow_none=True, what="rewards")
        verdicts = []
        for ra, rb in zip(r[:n], r[n:]):
            if ra is None or rb is None or abs(ra - rb) <= self.tol:
                verdicts.append(0)
            else:
                verdicts.append(1 if ra > rb else -1)
        return verdicts


class InputJudge(BaseJudge):
    """A human judge: shows both outputs and reads "a", "b" or "t" (tie) from `ask` (default: input()).

    Pass any `ask(message) -> str` to plug in a web form, a chat bot or a queue of annotators.
    """

    name = "human"
    ANSWERS = {"a": 1, "1": 1, "b": -1, "2": -1, "t": 0, "tie": 0, "=": 0}

    def __init__(self, ask: Callable[[str], str] = input, max_retries: int = 3) -> None:
        self.ask, self.max_retries = ask, max_retries

    def compare(self, prompt: str, output_a: str, output_b: str) -> int:
        message = f"PROMPT:\n{prompt}\n\n[a]:\n{output_a}\n\n[b]:\n{output_b}\n\nBetter? a / b / t(ie): "
        for _ in range(self.max_retries):
            answer = str(self.ask(message)).strip().lower()
            if answer in self.ANSWERS:
                return self.ANSWERS[answer]
        raise ObjectiveError(f"{self.name}: no valid answer (a/b/t) after {self.max_retries} tries")


class Generations(list):
    """Completions that remember their batch, so a two-argument compare(plus, minus) can find the prompts."""

    def __init__(self, texts: list[str], batch: list[dict]) -> None:
        super().__init__(texts)
        self.batch = batch


class PairwiseObjective:
    """What a comparison estimator needs: generate at theta+eps*z, generate at theta-eps*z, compare.

    compare(...) = mean over examples of judge(plus, minus) in [-1, 1]; positive = the plus side is
    preferred, so the estimator steps along +z. Pass the same seed to both generate calls so sampling
    noise is shared and only the weights differ. With the engine's estimator:
    `Pairwise(compare=obj.compare_outputs)` and `step(lambda: obj.generate(lm, batch, seed))`.
    """

    maximize = True

    def __init__(self, judge: Judge, *, template: Any = None, generation: Generation | None = None,
                 name: str | None = None) -> None:
        self.judge, self.template, self.generation = judge, template, generation or Generation()
        self.name = name or f"preference({getattr(judge, 'name', type(judge).__name__)})"

    def generate(self, lm: Any, batch: list[dict], seed: int | None = None) -> Generations:
        texts = check_texts(self.name, self.generation.run(lm, prompts_for(self.template, batch), seed), len(batch))
        return Generations(texts, batch)

    def verdicts(self, batch: list[dict], outs_plus: list[str], outs_minus: list[str]) -> list[int]:
        n = len(batch)
        plus, minus = check_texts(self.name, outs_plus, n, what="outs_plus"), check_texts(self.name, outs_minus, n, what="outs_minus")
        raw = self.judge.compare_batch(prompts_for(self.template, batch), plus, minus)
        if len(raw) != n:
            raise ObjectiveError(f"{self.name}: judge returned {len(raw)} verdicts, expected {n} (one per example)")
        return [check_verdict(self.name, v, i) for i, v in enumerate(raw)]

    def compare(self, batch: list[dict], outs_plus: list[str], outs_minus: list[str]) -> float:
        v = self.verdicts(batch, outs_plus, outs_minus)
        return sum(v) / len(v)  # mean preference: +1 all plus, -1 all minus

    def compare_outputs(self, outs_plus: Generations, outs_minus: Generations) -> float:
        """compare() for two results of generate(): the engine's Pairwise(compare=...) signature."""
        batch = getattr(outs_plus, "batch", None)
        if batch is None or getattr(outs_minus, "batch", None) != batch:
            raise ObjectiveError(f"{self.name}: compare_outputs needs two results of generate() on the same batch")
        return self.compare(batch, outs_plus, outs_minus)


class PreferenceRound:
    """One comparison with the engine in charge of the weights: call plus() at theta+eps*z, minus() at
    theta-eps*z (any order), then compare() -> mean preference in [-1, 1]."""

    def __init__(self, objective: PairwiseObjective, lm: Any, batch: list[dict], seed_plus: int | None,
                 seed_minus: int | None = None) -> None:
        self.objective, self.lm, self.batch = objective, lm, batch
        self.seed_plus = seed_plus
        self.seed_minus = seed_plus if seed_minus is None else seed_minus  # shared sampling by default
        self.outs_plus: list[str] | None = None
        self.outs_minus: list[str] | None = None

    def plus(self) -> list[str]:
        self.outs_plus = self.objective.generate(self.lm, self.batch, self.seed_plus)
        return self.outs_plus

    def minus(self) -> list[str]:
        self.outs_minus = self.objective.generate(self.lm, self.batch, self.seed_minus)
        return self.outs_minus

    def compare(self) -> float:
        if self.outs_plus is None or self.outs_minus is None:
            raise ObjectiveError(f"{self.objective.name}: call plus() and minus() before compare()")
        return self.objective.compare(self.batch, self.outs_plus, self.outs_minus)


def preference(lm: Any, judge: Judge, batch: list[dict], seed_plus: int | None, seed_minus: int | None = None,
               **settings: Any) -> PreferenceRound:
    """Shorthand: a PreferenceRound over PairwiseObjective(judge, **settings) (template=, generation=)."""
    return PreferenceRound(PairwiseObjective(judge, **settings), lm, batch, seed_plus, seed_minus)
