"""The scorer protocol: an `Objective` asks a language model for what it needs and returns a `Score`.

Every list that crosses this boundary (model outputs, reward values) is validated here so that a
NaN, a None or a short list fails loudly, naming the objective and the example, before it reaches the engine.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from blackbox_zo.errors import ObjectiveError  # torch-free; the engine raises the same class

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM



@dataclass(frozen=True)
class Score:
    per_example: list[float | None]  # one value per example; None = "does not apply" (rewards only)
    value: float  # the aggregate the engine optimises
    name: str
    info: dict = field(default_factory=dict)  # diagnostics (e.g. truncated count), never optimised


def check_values(
    name: str, values: Any, n: int, *, allow_none: bool = False, what: str = "values"
) -> list[float | None]:
    """Return `values` as floats, or raise ObjectiveError naming `name` and the first bad index."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError:
            raise ObjectiveError(f"{name}: {what} must be a list, got {type(values).__name__}") from None
    if len(values) != n:
        raise ObjectiveError(f"{name}: {what} has length {len(values)}, expected {n} (one per example)")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            if not allow_none:
                raise ObjectiveError(f"{name}: {what}[{i}] is None (None is allowed only for rewards)")
            out.append(None)
            continue
        if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:  # numpy / torch scalars
            v = v.item()
        if not isinstance(v, numbers.Real):  # bools are Real: True/False count as 1/0 (`"blue" in c` rewards)
            raise ObjectiveError(f"{name}: {what}[{i}] is not a number: {v!r} ({type(v).__name__})")
        v = float(v)
        if not math.isfinite(v):
            raise ObjectiveError(f"{name}: {what}[{i}] is not finite: {v}")
        out.append(v)
    return out


def check_texts(name: str, values: Any, n: int, *, what: str = "generations") -> list[str]:
    """Return `values` as a list of n strings, or raise ObjectiveError naming the first bad index."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ObjectiveError(f"{name}: {what} must be a list of strings, got {type(values).__name__}")
    if len(values) != n:
        raise ObjectiveError(f"{name}: {what} has length {len(values)}, expected {n} (one per example)")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ObjectiveError(f"{name}: {what}[{i}] is not a string: {v!r}")
    return list(values)


def mean_score(name: str, per_example: Sequence[float | None], info: dict | None = None) -> Score:
    """Score whose value is the mean over examples that apply (None excluded); all None is an error."""
    present = [v for v in per_example if v is not None]
    if not present:
        raise ObjectiveError(f"{name}: every example returned None, nothing to average")
    return Score(list(per_example), math.fsum(present) / len(present), name, dict(info or {}))


def prompts_for(template: str | Callable[[dict], str] | None, batch: list[dict], key: str = "prompt") -> list[str]:
    """Prompts from a format string (`"{sentence} It was"`), a function of the example, or a column."""
    if template is None:
        return [str(ex[key]) for ex in batch]
    if callable(template):
        return [template(ex) for ex in batch]
    return [template.format_map(ex) for ex in batch]


def names_failures(score: Callable) -> Callable:
    """`score` whose failures name the objective: a user's reward or metric that raises becomes an ObjectiveError
    "<name> raised <type>: <message>" (one line and exit 2 from the CLI), with the original as its cause."""
    @functools.wraps(score)
    def named(self, batch, outputs):
        try:
            return score(self, batch, outputs)
        except ObjectiveError:
            raise
        except Exception as e:
            raise ObjectiveError(f"{self.name} raised {type(e).__name__}: {e}") from e
    return named


class Objective:
    """Base of every scorer. Subclasses implement `outputs` (lm calls) and `score` (pure)."""

    name: str = "objective"
    maximize: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "score" in cls.__dict__:  # every scorer's own score(), so a raising user function is named wherever it runs
            cls.score = names_failures(cls.__dict__["score"])

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> Any:
        raise NotImplementedError

    def score(self, batch: list[dict], outputs: Any) -> Score:
        raise NotImplementedError

    def evaluate(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> Score:
        if not batch:
            raise ObjectiveError(f"{self.name}: empty batch")
        return self.score(batch, self.outputs(lm, batch, seed=seed))

    def loss(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> float:
        """The scalar to minimise: -value when maximize, else value (what a ZO estimator differences)."""
        value = self.evaluate(lm, batch, seed=seed).value
        return -value if self.maximize else value

    def __call__(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> float:
        return self.evaluate(lm, batch, seed=seed).value
