"""Pure classification metrics over predicted and gold labels, computed by scikit-learn.

A prediction of None (unparseable generation) counts as wrong: it is mapped to a label no gold has.
"""

from __future__ import annotations

from typing import Any, Sequence

AVERAGES = ("binary", "macro", "micro")
_MISSING = "<unparsed>"  # stands in for a None prediction: never equal to a gold label


def _as_str(labels: Sequence[Any]) -> list[str]:
    # Labels are compared as strings so that "1" from a TSV equals 1 from a label-word mapping.
    return [_MISSING if x is None else str(x) for x in labels]


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Fraction of predictions equal to their reference."""
    from sklearn.metrics import accuracy_score  # sklearn takes ~1 s to import: only when a metric is computed

    return float(accuracy_score(_as_str(references), _as_str(predictions)))


def f1(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    average: str = "macro",
    labels: Sequence[Any] | None = None,
    pos_label: Any = 1,
) -> float:
    """F1 (binary: of `pos_label`; macro: unweighted mean over `labels`; micro: from pooled counts).

    `labels` (the verbaliser's classes) fixes the class set so that a class absent from a small batch
    still counts in the macro average (its F1 is 0 when predicted but never gold, and sklearn's
    zero_division=0 convention applies when it is neither).
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    from sklearn.metrics import f1_score
    y_true, y_pred = _as_str(references), _as_str(predictions)
    kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
    if average == "binary":
        # F1 of the positive class alone; micro over one label = that class's F1, and unlike
        # sklearn's "binary" it accepts an unparsed prediction as a third value.
        kwargs.update(average="micro", labels=[str(pos_label)])
    elif labels is not None:
        kwargs["labels"] = _as_str(labels)  # micro over these labels: unparsed predictions are FPs of none
    return float(f1_score(y_true, y_pred, **kwargs))
