"""A fluency guard around any judge: answers a frozen reference model finds implausible lose first.

Why: a judge that sees one property (short words, a keyword, a reward model's blind spot) is climbed by text
that breaks; scoring each answer's per-token NLL under the untuned model keeps the climb within fluent text.
"""

from __future__ import annotations

from statistics import quantiles
from typing import TYPE_CHECKING, Sequence

from .base import ObjectiveError, check_texts, check_values
from .generation import Generation
from .judges import BaseJudge, Judge, judge_verdicts

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM


def reference_nll(reference: LM, prompts: Sequence[str], answers: Sequence[str], name: str = "fluency") -> list[float]:
    """Mean NLL per answer token under `reference`, each answer read after the text generate() continued."""
    contexts = [reference.prompt_text(p) for p in prompts]
    logliks = check_values(name, reference.loglik(contexts, list(answers), reduce="mean"), len(answers),
                           what="reference logliks")
    return [-v for v in logliks]  # NLL = -(1/T) sum_t log p_ref(y_t | x, y_<t); an empty answer scores 0


class FluencyGuard(BaseJudge):
    """`judge` between answers the reference finds fluent: mean NLL per token <= `max_nll` under `reference`.

    One answer over the bound loses to one within it; two over it: the lower NLL wins; two within it: `judge`
    (only those pairs reach it, so a person is never asked about a pair the guard decided).
    `reference` is an LM over the weights before tuning (load the model a second time: tuning must not move it).
    Repetition is cheap under an LM ("A:\\nA:\\nA:" reads ~1.7 nats/token), so keep a judge that checks content.
    """

    def __init__(self, judge: Judge, reference: LM, *, max_nll: float, name: str | None = None) -> None:
        if not isinstance(max_nll, (int, float)) or isinstance(max_nll, bool) or not max_nll > 0:
            raise ValueError(f"max_nll must be a positive number of nats per token, got {max_nll!r}")
        self.judge, self.reference, self.max_nll = judge, reference, float(max_nll)
        self.name = name or f"fluent({getattr(judge, 'name', type(judge).__name__)})"

    @classmethod
    def calibrated(cls, judge: Judge, reference: LM, prompts: Sequence[str], *, generation: Generation | None = None,
                   quantile: float = 0.9, slack: float = 0.5, seed: int | None = 0,
                   answers: Sequence[str] | None = None) -> FluencyGuard:
        """max_nll from the untuned model's answers to `prompts` (e.g. the training prompts): the `quantile` of
        their NLLs plus `slack` nats/token, so nearly all pass. `answers`: those answers when the reference does
        not write them as the tuned model does (e.g. it reads without the chat template); default: it generates."""
        if len(prompts) < 2:
            raise ObjectiveError("FluencyGuard.calibrated needs at least 2 prompts to take a quantile of")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
        if answers is None:
            answers = (generation or Generation()).run(reference, list(prompts), seed)
        answers = check_texts("fluency", answers, len(prompts), what="answers")
        nll = reference_nll(reference, prompts, answers)
        cut = quantiles(nll, n=1000, method="inclusive")[round(quantile * 1000) - 1]  # the empirical quantile
        return cls(judge, reference, max_nll=cut + slack)

    def compare_batch(self, prompts: Sequence[str], outs_a: Sequence[str], outs_b: Sequence[str]) -> list[int]:
        n = len(prompts)
        if not n == len(outs_a) == len(outs_b):
            raise ObjectiveError(f"{self.name}: {n} prompts, {len(outs_a)} and {len(outs_b)} outputs")
        nll = reference_nll(self.reference, list(prompts) * 2, list(outs_a) + list(outs_b), self.name)  # one call
        verdicts = [self.guard(na, nb) for na, nb in zip(nll[:n], nll[n:])]
        open_ = [i for i, v in enumerate(verdicts) if v is None]  # only these reach the judge (a person's time)
        if open_:
            inner = judge_verdicts(self.judge, self.name, [prompts[i] for i in open_], [outs_a[i] for i in open_],
                                   [outs_b[i] for i in open_])
            for i, v in zip(open_, inner):
                verdicts[i] = v
        return verdicts

    def guard(self, nll_a: float, nll_b: float) -> int | None:
        """The verdict when an answer is over the bound; None when both are within it (the judge decides)."""
        over_a, over_b = nll_a > self.max_nll, nll_b > self.max_nll
        if over_a and over_b:
            return (nll_a < nll_b) - (nll_a > nll_b)  # both implausible: the less implausible wins
        if over_a or over_b:
            return -1 if over_a else 1
        return None
