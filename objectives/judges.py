"""Preference judges (rule, reward, human) and the pairwise objective the engine's comparison estimator calls.

A judge says which of two outputs is better: +1 the first, -1 the second, 0 a tie; nothing else is allowed.
Every judge is also the engine's `compare(out_plus, out_minus) -> preference in [-1, 1]`, so
`MeZO(model, estimator="pairwise", compare=judge)` works with any of them.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from .base import ObjectiveError, Score, check_texts, check_values, mean_score, prompts_for
from .generation import Generation
from .kl import KLBrake, braked_verdict
from .rewards import call_reward
from .text_report import text_report, with_answers

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


def check_verdict(name: str, verdict: Any, index: int) -> int:
    """Verdicts must be exactly -1, 0 or +1 (bools and floats like 0.5 are rejected)."""
    if isinstance(verdict, bool) or not isinstance(verdict, numbers.Real) or verdict not in (-1, 0, 1):
        raise ObjectiveError(f"{name}: verdict[{index}] is {verdict!r}, expected -1, 0 or +1")
    return int(verdict)


@runtime_checkable
class Judge(Protocol):
    """What PairwiseObjective needs; judges built on BaseJudge are also callable as the engine's compare."""

    def compare(self, prompt: str, output_a: str, output_b: str) -> int: ...
    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]: ...


class Generations(list):
    """Completions that remember their batch, prompts and sampling seed, so a judge can see the prompts."""

    def __init__(self, texts: list[str], batch: list[dict], prompts: list[str] | None = None,
                 seed: int | None = None, drift: list[float] | None = None) -> None:
        super().__init__(texts)
        self.batch, self.prompts, self.seed = batch, prompts, seed
        self.drift = drift  # KL-hat of each text against pi_0, measured where it was generated (kl > 0 only)


def prompts_of(name: str, outs_plus: Sequence[str], outs_minus: Sequence[str]) -> list[str]:
    """The prompts both sides answered (carried by Generations); "" for each when plain lists were passed."""
    plus, minus = getattr(outs_plus, "prompts", None), getattr(outs_minus, "prompts", None)
    if plus is not None and minus is not None and list(plus) != list(minus):
        raise ObjectiveError(f"{name}: the two sides were generated for different prompts")
    prompts = plus if plus is not None else minus
    return list(prompts) if prompts is not None else [""] * len(outs_plus)


def judge_verdicts(judge: Judge, name: str, prompts: Sequence[str], outs_a: Any, outs_b: Any) -> list[int]:
    """judge.compare_batch with every list checked: n strings per side, and exactly one -1/0/+1 per example."""
    n = len(prompts)
    a, b = check_texts(name, outs_a, n, what="outs_plus"), check_texts(name, outs_b, n, what="outs_minus")
    raw = judge.compare_batch(list(prompts), a, b)
    if len(raw) != n:
        raise ObjectiveError(f"{name}: judge returned {len(raw)} verdicts, expected {n} (one per example)")
    return [check_verdict(name, v, i) for i, v in enumerate(raw)]


def mean_preference(verdicts: Sequence[int]) -> float:
    """The engine's preference for the plus side: mean verdict in [-1, 1] (+1: every plus output wins)."""
    return sum(verdicts) / len(verdicts)


class BaseJudge:
    """compare_batch defaults to one compare per example; subclasses override either.

    Calling a judge, `judge(outs_plus, outs_minus)`, is the pairwise estimator's compare: the mean verdict.
    """

    name = "judge"

    def compare(self, prompt: str, output_a: str, output_b: str) -> int:
        return self.compare_batch([prompt], [output_a], [output_b])[0]

    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]:
        if not len(prompts) == len(outs_a) == len(outs_b):
            raise ObjectiveError(f"{self.name}: {len(prompts)} prompts, {len(outs_a)} and {len(outs_b)} outputs")
        return [check_verdict(self.name, self.compare(p, a, b), i)
                for i, (p, a, b) in enumerate(zip(prompts, outs_a, outs_b))]

    def __call__(self, outs_plus: Sequence[str], outs_minus: Sequence[str]) -> float:
        if isinstance(outs_plus, (str, bytes)) or not len(outs_plus):
            raise ObjectiveError(f"{self.name}: compare(outs_plus, outs_minus) needs non-empty lists of texts, "
                                 f"got {outs_plus!r:.60}")
        prompts = prompts_of(self.name, outs_plus, outs_minus)
        return mean_preference(judge_verdicts(self, self.name, prompts, outs_plus, outs_minus))


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


class PairwiseObjective(KLBrake):
    """What a comparison estimator needs: generate at theta+eps*z, generate at theta-eps*z, compare.

    compare(...) = mean over examples of judge(plus, minus) in [-1, 1]; positive = the plus side is
    preferred, so the estimator steps along +z. Pass the same seed to both generate calls so sampling
    noise is shared and only the weights differ. With the engine: `MeZO(..., estimator="pairwise",
    compare=obj)` (or `compare=obj.judge`) and `step(lambda: obj.generate(lm, batch, seed))`; the
    `Trainer` does exactly this when given a PairwiseObjective.

    With `kl` > 0 and `reference` (pi_0), each side's KL-hat is measured where it was generated and every verdict
    pays a margin on the KL difference (`objectives.kl.braked_verdict`): the judge's verdicts stay in {-1, 0, 1}.
    """

    maximize = True

    def __init__(self, judge: Judge, *, template: Any = None, generation: Generation | None = None,
                 name: str | None = None, kl: float = 0.0, reference: LM | None = None) -> None:
        self.judge, self.template, self.generation = judge, template, generation or Generation()
        self.name = name or f"preference({getattr(judge, 'name', type(judge).__name__)})"
        self.use_reference(reference, kl)

    def generate(self, lm: LM, batch: list[dict], seed: int | None = None) -> Generations:
        if not batch:
            raise ObjectiveError(f"{self.name}: empty batch")
        prompts = prompts_for(self.template, batch)
        texts = check_texts(self.name, self.generation.run(lm, prompts, seed), len(batch))
        return Generations(texts, batch, prompts, seed, self.drift(lm, prompts, texts))

    def verdicts(self, batch: list[dict], outs_plus: list[str], outs_minus: list[str], braked: bool = True) -> list[int]:
        """The judge's verdicts, each braked by the two sides' KL-hat when kl > 0 (braked=False: as judged)."""
        raw = judge_verdicts(self.judge, self.name, prompts_for(self.template, batch), outs_plus, outs_minus)
        plus, minus = getattr(outs_plus, "drift", None), getattr(outs_minus, "drift", None)
        if not (braked and self.kl) or plus is None or minus is None:
            return raw
        return [braked_verdict(v, a, b, self.kl) for v, a, b in zip(raw, plus, minus)]

    def compare(self, batch: list[dict], outs_plus: list[str], outs_minus: list[str]) -> float:
        return mean_preference(self.verdicts(batch, outs_plus, outs_minus))

    def compare_outputs(self, outs_plus: Generations, outs_minus: Generations) -> float:
        """compare() for two results of generate(): the engine's compare(out_plus, out_minus) signature."""
        batch = getattr(outs_plus, "batch", None)
        if batch is None or getattr(outs_minus, "batch", None) != batch:
            raise ObjectiveError(f"{self.name}: compare_outputs needs two results of generate() on the same batch")
        return self.compare(batch, outs_plus, outs_minus)

    __call__ = compare_outputs

    def win_rate(self, reference: Generations) -> WinRate:
        """A validation objective: how often the judge prefers outputs at the current weights to `reference`."""
        return WinRate(self, reference)


class WinRate:
    """Win-rate of fresh outputs against fixed reference outputs (e.g. the base model's), ties counting half.

    evaluate(lm, batch) generates for the reference's batch with the reference's sampling seed (so only the
    weights differ) and scores each example 1 (the judge prefers the new output), 0.5 (tie) or 0; value =
    the mean, so 0.5 = no change: at unchanged weights every verdict is a tie. The verdicts are the judge's own,
    never braked: a KL brake shapes the training signal, the win-rate reports what the judge thinks.
    """

    maximize = True

    def __init__(self, objective: PairwiseObjective, reference: Generations) -> None:
        if getattr(reference, "batch", None) is None:
            raise ObjectiveError(f"{objective.name}: win_rate needs a result of generate() as its reference")
        self.objective, self.reference = objective, reference
        self.name = f"win_rate({objective.name})"

    def evaluate(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> Score:
        """`seed` is ignored: fresh outputs are sampled with the reference's seed, like for like."""
        if batch != self.reference.batch:
            raise ObjectiveError(f"{self.name}: evaluate() must get the batch the reference was generated for")
        fresh = self.objective.generate(lm, batch, self.reference.seed)
        verdicts = self.objective.verdicts(batch, fresh, self.reference, braked=False)  # the judge's own win-rate
        score = mean_score(self.name, [(v + 1) / 2 for v in verdicts])  # +1 -> 1, tie -> 0.5, -1 -> 0
        return with_answers(score, fresh.prompts, fresh)

    def text_report(self, score: Score, lm: LM | None = None) -> dict[str, float] | None:
        """Text metrics of the fresh answers `score` carries; their NLL under the objective's pi_0 when it has one,
        and their per-token KL from it when the tuned `lm` is given too."""
        return text_report(score, self.objective.reference, lm)


class PreferenceRound:
    """One comparison with the engine in charge of the weights: call plus() at theta+eps*z, minus() at
    theta-eps*z (any order), then compare() -> mean preference in [-1, 1]."""

    def __init__(self, objective: PairwiseObjective, lm: LM, batch: list[dict], seed_plus: int | None,
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


def preference(lm: LM, judge: Judge, batch: list[dict], seed_plus: int | None, seed_minus: int | None = None,
               **settings: Any) -> PreferenceRound:
    """Shorthand: a PreferenceRound over PairwiseObjective(judge, **settings) (template=, generation=)."""
    return PreferenceRound(PairwiseObjective(judge, **settings), lm, batch, seed_plus, seed_minus)
