"""What a validation's answers say about the text: the answers themselves and their text metrics, NLL under pi_0 too.

Why: a Score that carries its answers lets a run store them (samples.jsonl) and put repetition, distinct-2, length
and fluency under the untuned model beside the reward, without the engine knowing what an answer is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .base import Score, check_values
from .drift import token_kl
from .text_metrics import text_metrics

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM

ANSWERS, PROMPTS = "answers", "prompts"  # the keys of Score.info that carry a validation's text


def reference_nll(reference: LM, prompts: Sequence[str], answers: Sequence[str], name: str = "fluency") -> list[float]:
    """Mean NLL per answer token under `reference`, each answer read after the text generate() continued."""
    contexts = [reference.prompt_text(p) for p in prompts]
    logliks = check_values(name, reference.loglik(contexts, list(answers), reduce="mean"), len(answers),
                           what="reference logliks")
    return [-v for v in logliks]  # NLL = -(1/T) sum_t log p_ref(y_t | x, y_<t); an empty answer scores 0


def with_answers(score: Score, prompts: Sequence[str], answers: Sequence[str]) -> Score:
    """`score` with the prompts and answers it was computed from in its info (read by `text_report`)."""
    return Score(score.per_example, score.value, score.name, {**score.info, PROMPTS: list(prompts),
                                                               ANSWERS: list(answers)})


def text_report(score: Score, reference: LM | None = None, lm: LM | None = None) -> dict[str, float] | None:
    """The text metrics of the answers `score` carries (None when it carries none): repeated word / token
    trigrams, distinct-2, mean length; with a reference (pi_0) the answers' mean NLL per token under it, and with
    the tuned `lm` too their per-token KL from pi_0: `kl_exact` (full vocabulary) or `kl_k3` (objectives.drift)."""
    info = getattr(score, "info", None) or {}  # a Score, or what a Ray worker sent back of one (plain data)
    answers = info.get(ANSWERS)
    if not answers:
        return None
    name = getattr(score, "name", "fluency")
    nll = None if reference is None else reference_nll(reference, info[PROMPTS], answers, name)
    numbers = text_metrics(answers, nll=nll)
    if reference is not None and lm is not None:
        kl, how = token_kl(lm, reference, info[PROMPTS], answers, name)
        numbers[f"kl_{how}"] = kl
    return numbers
