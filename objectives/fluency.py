"""A fluency guard around any judge: answers a frozen reference model finds implausible lose first.

Why: a judge that sees one property (short words, a keyword, a reward model's blind spot) is climbed by text
that breaks; scoring each answer's per-token NLL under the untuned model keeps the climb within fluent text.
"""

from __future__ import annotations

from statistics import quantiles
from typing import TYPE_CHECKING, Sequence

from .base import ObjectiveError, check_texts
from .generation import Generation
from .judges import BaseJudge, Judge, judge_verdicts
from .text_metrics import repeated_trigrams
from .text_report import reference_nll

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


def _quantile(values: Sequence[float], q: float) -> float:
    return quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]  # the empirical quantile


class FluencyGuard(BaseJudge):
    """`judge` between answers the reference finds fluent: mean NLL per token <= `max_nll` under `reference`
    (and, with `max_repeat`, a share of repeated word trigrams <= `max_repeat`).

    One answer over a bound loses to one within both; two over: the one over fewer bounds, then the lower NLL,
    wins; two within: `judge` (only those pairs reach it, so a person is never asked about a pair the guard
    decided). `reference` is an LM over the weights before tuning: a second copy, or `blackbox_zo.lm.UntunedLM`
    for steering vectors and LoRA factors. Repetition is cheap under an LM ("A:\\nA:\\nA:" reads ~1.7
    nats/token, "the the the ..." under the bound), so set `max_repeat` or keep a judge that checks content.
    """

    def __init__(self, judge: Judge, reference: LM, *, max_nll: float, max_repeat: float | None = None,
                 name: str | None = None) -> None:
        if not isinstance(max_nll, (int, float)) or isinstance(max_nll, bool) or not max_nll > 0:
            raise ValueError(f"max_nll must be a positive number of nats per token, got {max_nll!r}")
        if max_repeat is not None and (isinstance(max_repeat, bool) or not isinstance(max_repeat, (int, float))
                                       or not 0 <= max_repeat < 1):
            raise ValueError(f"max_repeat must be a share of repeated trigrams in [0, 1), got {max_repeat!r}")
        self.judge, self.reference, self.max_nll = judge, reference, float(max_nll)
        self.max_repeat = None if max_repeat is None else float(max_repeat)
        self.name = name or f"fluent({getattr(judge, 'name', type(judge).__name__)})"

    @classmethod
    def calibrated(cls, judge: Judge, reference: LM, prompts: Sequence[str], *, generation: Generation | None = None,
                   quantile: float = 0.9, slack: float = 0.5, seed: int | None = 0,
                   answers: Sequence[str] | None = None, repeat_slack: float | None = None) -> FluencyGuard:
        """max_nll from the untuned model's answers to `prompts` (e.g. the training prompts): the `quantile` of
        their NLLs plus `slack` nats/token, so nearly all pass; with `repeat_slack`, max_repeat likewise from
        their shares of repeated trigrams. `answers`: those answers when the reference does not write them as the
        tuned model does (e.g. it reads without the chat template); default: it generates."""
        if len(prompts) < 2:
            raise ObjectiveError("FluencyGuard.calibrated needs at least 2 prompts to take a quantile of")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
        if answers is None:
            answers = (generation or Generation()).run(reference, list(prompts), seed)
        answers = check_texts("fluency", answers, len(prompts), what="answers")
        max_nll = _quantile(reference_nll(reference, prompts, answers), quantile) + slack
        max_repeat = None if repeat_slack is None else min(
            _quantile([repeated_trigrams(a) for a in answers], quantile) + repeat_slack, 0.999)
        return cls(judge, reference, max_nll=max_nll, max_repeat=max_repeat)

    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]:
        n = len(prompts)
        if not n == len(outs_a) == len(outs_b):
            raise ObjectiveError(f"{self.name}: {n} prompts, {len(outs_a)} and {len(outs_b)} outputs")
        nll = reference_nll(self.reference, list(prompts) * 2, list(outs_a) + list(outs_b), self.name)  # one call
        rep = [repeated_trigrams(t) for t in list(outs_a) + list(outs_b)]
        verdicts = [self.guard(na, nb, ra, rb) for na, nb, ra, rb in zip(nll[:n], nll[n:], rep[:n], rep[n:])]
        open_ = [i for i, v in enumerate(verdicts) if v is None]  # only these reach the judge (a person's time)
        if open_:
            inner = judge_verdicts(self.judge, self.name, [prompts[i] for i in open_], [outs_a[i] for i in open_],
                                   [outs_b[i] for i in open_])
            for i, v in zip(open_, inner):
                verdicts[i] = v
        return verdicts

    def guard(self, nll_a: float, nll_b: float, repeat_a: float = 0.0, repeat_b: float = 0.0) -> int | None:
        """The verdict when an answer is over a bound; None when both are within them (the judge decides)."""
        over_a, over_b = self.bounds_over(nll_a, repeat_a), self.bounds_over(nll_b, repeat_b)
        if not over_a and not over_b:
            return None
        worse_a, worse_b = (over_a, nll_a), (over_b, nll_b)  # fewer bounds crossed, then the lower NLL, wins
        return (worse_a < worse_b) - (worse_a > worse_b)

    def bounds_over(self, nll: float, repeat: float) -> int:
        """How many of the bounds an answer crosses (0, 1 or 2)."""
        return (nll > self.max_nll) + (self.max_repeat is not None and repeat > self.max_repeat)
