"""Label-word margin: per example log p(right word) - max over the other label words of log p(word), averaged.

A smooth objective with accuracy's sign: an example is right exactly when its margin is > 0, but unlike accuracy the
value moves with every small change, and unlike cross-entropy it stops paying once `cap` is reached (less overfitting).
"""

from __future__ import annotations

from typing import Any, Mapping

from .base import ObjectiveError, Score
from .classification import LabelWordClassifier, Template, Verbalizer


class LabelWordMargin(LabelWordClassifier):
    """value = mean_i min(cap, s[i, gold_i] - max_{c != gold_i} s[i, c]) over the (optionally calibrated) label-word
    log-probs s (maximise); per_example holds the margins, info the accuracy (margin > 0, argmax ties count wrong)."""

    maximize = True

    def __init__(self, template: Template, verbalizer: Verbalizer | Mapping[Any, str], *, cap: float | None = None,
                 name: str | None = None, **options: Any) -> None:
        """`options`: LabelWordClassifier's (label_key, calibrate, content_free_prompt, reference, ensemble)."""
        if cap is not None and not cap > 0:
            raise ValueError(f"cap must be a number > 0 or None, got {cap!r}")
        super().__init__(template, verbalizer, name=name or "label_word_margin", **options)
        if len(self.verbalizer.words) < 2:
            raise ValueError(f"{self.name}: a margin needs at least 2 label words, got {self.verbalizer.word_list}")
        self.cap = cap

    def score(self, batch: list[dict], outputs: dict | list) -> Score:
        margins = []
        for i, (ex, row) in enumerate(zip(batch, self.rows(batch, outputs))):
            if self.label_key not in ex:
                raise ObjectiveError(f"{self.name}: example {i} has no {self.label_key!r} column")
            try:
                gold = self.verbalizer.index(ex[self.label_key])
            except KeyError as err:
                raise ObjectiveError(f"{self.name}: example {i}: {err.args[0]}") from None
            margins.append(row[gold] - max(v for c, v in enumerate(row) if c != gold))  # m_i = s_gold - max_other s
        capped = [m if self.cap is None else min(m, self.cap) for m in margins]
        accuracy = sum(1.0 for m in margins if m > 0) / len(margins)
        return Score(margins, sum(capped) / len(capped), self.name,
                     {"accuracy": accuracy, "mean_margin": sum(margins) / len(margins)})
