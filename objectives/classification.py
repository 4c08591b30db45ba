"""Classification objectives: label-word scoring (MeZO's prompt + verbaliser), parsed generations, multiple choice.

Each reports accuracy or F1 over the batch; per-example values are 1.0/0.0 correctness (F1 is not a mean of them).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import metrics
from .base import Objective, ObjectiveError, Score, check_texts, check_values, prompts_for

if TYPE_CHECKING:  # typing only: objectives never import the engine at run time
    from blackbox_zo.lm import LM

Template = str | Callable[[dict], str] | None


@dataclass(frozen=True)
class Verbalizer:
    """Maps each class label to the word that names it, e.g. SST-2 {0: "terrible", 1: "great"}."""

    words: Mapping[Any, str]

    @property
    def labels(self) -> list[Any]:
        return list(self.words)

    @property
    def word_list(self) -> list[str]:
        return list(self.words.values())

    def index(self, label: Any) -> int:
        """Position of `label` among the classes; labels match by str() so "1" (TSV) equals 1."""
        for i, key in enumerate(self.words):
            if str(key) == str(label):
                return i
        raise KeyError(f"label {label!r} is not one of {self.labels}")

    def parse(self, text: str) -> Any | None:
        """Label whose word starts the text, else whose word occurs first in it (whole word), else None."""
        lowered = text.lower()
        first = re.findall(r"\w+", lowered)[:1]
        for label, word in self.words.items():
            if first and first[0] == word.lower():
                return label
        hits = [(m.start(), label) for label, word in self.words.items()
                if (m := re.search(rf"\b{re.escape(word.lower())}\b", lowered))]
        return min(hits, key=lambda h: h[0])[1] if hits else None


def classification_score(name: str, predictions: list, batch: list[dict], verbalizer: Verbalizer,
                         label_key: str, metric: str, average: str, pos_label: Any) -> Score:
    """accuracy or F1 of predicted labels against `batch[i][label_key]` (labels compared by str)."""
    golds = []
    for i, ex in enumerate(batch):
        if label_key not in ex:
            raise ObjectiveError(f"{name}: example {i} has no {label_key!r} column")
        try:
            golds.append(verbalizer.labels[verbalizer.index(ex[label_key])])
        except KeyError as err:
            raise ObjectiveError(f"{name}: example {i}: {err.args[0]}") from None
    per = [1.0 if p is not None and str(p) == str(g) else 0.0 for p, g in zip(predictions, golds)]
    if metric == "accuracy":
        value = metrics.accuracy(predictions, golds)
    else:
        pos = verbalizer.labels[-1] if pos_label is None else pos_label
        value = metrics.f1(predictions, golds, average=average, labels=verbalizer.labels, pos_label=pos)
    return Score(per, value, name, {"predictions": list(predictions)})


def _check_metric(metric: str, average: str) -> None:
    if metric not in ("accuracy", "f1"):
        raise ValueError(f"metric must be 'accuracy' or 'f1', got {metric!r}")
    if average not in metrics.AVERAGES:
        raise ValueError(f"average must be one of {metrics.AVERAGES}, got {average!r}")


def content_free(template: str) -> str:
    """The template with every field replaced by "N/A" (contextual calibration, Zhao et al. 2021)."""
    return template.format_map(defaultdict(lambda: "N/A"))


CALIBRATIONS = (None, "batch", "content_free", "reference")


def as_verbalizer(words: Verbalizer | Mapping[Any, str]) -> Verbalizer:
    """A Verbalizer from itself or from a {label: word} mapping."""
    return words if isinstance(words, Verbalizer) else Verbalizer(dict(words))


@dataclass(frozen=True)
class _Prompt:
    """One prompt of a label-word classifier: its template, label words and content-free prompt (if calibrated so)."""

    template: Template
    verbalizer: Verbalizer
    content_free: str | None

    @staticmethod
    def make(template: Template, verbalizer: Verbalizer, calibrate: str | None, content_free_prompt: str | None) -> _Prompt:
        if calibrate == "content_free" and content_free_prompt is None:
            if not isinstance(template, str):
                raise ValueError("calibrate='content_free' with a callable template needs content_free_prompt")
            content_free_prompt = content_free(template)
        return _Prompt(template, verbalizer, content_free_prompt if calibrate == "content_free" else None)

    def outputs(self, lm: LM, batch: list[dict], reference: list[dict] | None) -> dict:
        """Label-word log-probs of the batch, plus the content-free prompt's and the reference examples' when used."""
        words = self.verbalizer.word_list
        out = {"logprobs": lm.label_word_logits(prompts_for(self.template, batch), words).tolist()}
        if self.content_free is not None:
            out["content_free"] = lm.label_word_logits([self.content_free], words).tolist()[0]
        if reference is not None:
            out["reference"] = lm.label_word_logits(prompts_for(self.template, reference), words).tolist()
        return out


class LabelWordClassifier(Objective):
    """Predict the label whose word has the highest next-token log-probability after the prompt.

    calibrate=None: raw log-probs. "batch": subtract each class's mean log-prob over the batch,
    s'[i,c] = s[i,c] - mean_j s[j,c] (removes a prior towards one word; depends on batch make-up).
    "content_free": subtract the log-probs after the content-free prompt, s'[i,c] = s[i,c] - s_cf[c].
    "reference": subtract each class's mean log-prob over fixed `reference` examples (e.g. the training inputs;
    their labels are not read), s'[i,c] = s[i,c] - mean_{j in R} s_j[c]: batch calibration that does not
    depend on what else is in the batch, recomputed under the current weights at every evaluation.
    ensemble=[(template, label_words), ...]: more prompts for the same classes; their calibrated rows are
    averaged with this prompt's, s[i,c] = mean_p s'_p[i,c] (a prompt ensemble: less sensitive to one wording).
    tiebreak=True (accuracy only): value = accuracy + mean_i p_i / (B + 1), p_i = softmax over the label
    words of the gold word's probability. The added term moves by less than one example's flip (1/B), so
    any change of accuracy still decides, and a step whose two sides score the same accuracy (a plateau)
    is decided by how much more probable the right words became. Per-example values stay 1/0 correctness.
    """

    maximize = True

    def __init__(self, template: Template, verbalizer: Verbalizer | Mapping[Any, str], *,
                 label_key: str = "label", metric: str = "accuracy", average: str = "macro",
                 pos_label: Any = None, calibrate: str | None = None,
                 content_free_prompt: str | None = None, reference: Sequence[dict] | None = None,
                 ensemble: Sequence[tuple[Template, Verbalizer | Mapping[Any, str]]] = (),
                 tiebreak: bool = False, name: str | None = None) -> None:
        _check_metric(metric, average)
        if tiebreak and metric != "accuracy":
            raise ValueError(f"tiebreak applies to metric='accuracy' (F1 moves in steps smaller than 1/B), got {metric!r}")
        if calibrate not in CALIBRATIONS:
            raise ValueError(f"calibrate must be one of {CALIBRATIONS}, got {calibrate!r}")
        if (calibrate == "reference") != bool(reference):
            raise ValueError("calibrate='reference' needs reference=[examples] (and reference needs calibrate='reference'), "
                             f"got calibrate={calibrate!r} with {len(reference or [])} reference examples")
        self.template, self.label_key, self.metric, self.average = template, label_key, metric, average
        self.verbalizer = as_verbalizer(verbalizer)
        self.pos_label, self.calibrate, self.reference = pos_label, calibrate, list(reference or [])
        self.prompts = [_Prompt.make(template, self.verbalizer, calibrate, content_free_prompt)]
        for i, (extra, words) in enumerate(ensemble):
            prompt = _Prompt.make(extra, as_verbalizer(words), calibrate, None)
            if [str(x) for x in prompt.verbalizer.labels] != [str(x) for x in self.verbalizer.labels]:
                raise ValueError(f"ensemble[{i}] names labels {prompt.verbalizer.labels}, expected the same classes in the "
                                 f"same order as the first prompt: {self.verbalizer.labels}")
            self.prompts.append(prompt)
        self.content_free_prompt = self.prompts[0].content_free
        self.tiebreak = tiebreak
        self.name = name or (f"label_word_{metric}" if metric == "accuracy" else f"label_word_f1_{average}")
        self.name += "_tiebreak" if tiebreak and not name else ""

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> dict:
        views = [prompt.outputs(lm, batch, self.reference if self.calibrate == "reference" else None)
                 for prompt in self.prompts]
        return views[0] if len(views) == 1 else {"views": views}

    def rows(self, batch: list[dict], outputs: dict | list) -> list[list[float]]:
        """The label-word log-probs per example, checked, calibrated as `calibrate` says, averaged over the prompts."""
        views = outputs["views"] if isinstance(outputs, dict) and "views" in outputs else [outputs]
        if len(views) != len(self.prompts):
            raise ObjectiveError(f"{self.name}: outputs hold {len(views)} prompts' scores, expected {len(self.prompts)}")
        per = [self._calibrated(batch, view) for view in views]
        k = len(self.verbalizer.words)
        return [[sum(p[i][c] for p in per) / len(per) for c in range(k)]  # s[i,c] = mean_p s'_p[i,c]
                for i in range(len(batch))] if len(per) > 1 else per[0]

    def _calibrated(self, batch: list[dict], outputs: dict | list) -> list[list[float]]:
        rows = outputs["logprobs"] if isinstance(outputs, dict) else outputs
        k = len(self.verbalizer.words)
        if len(rows) != len(batch):
            raise ObjectiveError(f"{self.name}: logprobs has length {len(rows)}, expected {len(batch)} (one per example)")
        rows = [check_values(self.name, r, k, what=f"logprobs[{i}]") for i, r in enumerate(rows)]
        if self.calibrate == "reference" and not (isinstance(outputs, dict) and "reference" in outputs):
            raise ObjectiveError(f"{self.name}: calibrate='reference' needs outputs['reference'] (the reference examples' "
                                 "log-probs, as outputs() returns them)")
        if self.calibrate in ("batch", "reference"):
            pool = rows if self.calibrate == "batch" else [
                check_values(self.name, r, k, what=f"reference logprobs[{i}]") for i, r in enumerate(outputs["reference"])]
            mean = [sum(r[c] for r in pool) / len(pool) for c in range(k)]  # s'[i,c] = s[i,c] - mean_j s[j,c]
            rows = [[r[c] - mean[c] for c in range(k)] for r in rows]
        elif self.calibrate == "content_free":
            cf = check_values(self.name, outputs["content_free"], k, what="content_free logprobs")
            rows = [[r[c] - cf[c] for c in range(k)] for r in rows]  # s'[i,c] = s[i,c] - s_cf[c]
        return rows

    def score(self, batch: list[dict], outputs: dict | list) -> Score:
        rows = self.rows(batch, outputs)
        k = len(self.verbalizer.words)
        labels = self.verbalizer.labels
        preds = [labels[max(range(k), key=r.__getitem__)] for r in rows]  # argmax, first wins ties
        score = classification_score(self.name, preds, batch, self.verbalizer, self.label_key,
                                     self.metric, self.average, self.pos_label)
        if not self.tiebreak:
            return score
        gold = [self.verbalizer.index(ex[self.label_key]) for ex in batch]
        p_gold = [gold_probability(r, g) for r, g in zip(rows, gold)]
        bonus = sum(p_gold) / len(p_gold) / (len(batch) + 1)  # < 1/B: never outweighs one example's flip
        return Score(score.per_example, score.value + bonus, self.name,
                     {**score.info, "accuracy": score.value, "gold_probability": sum(p_gold) / len(p_gold)})


def gold_probability(row: list[float], gold: int) -> float:
    """softmax(row)[gold]: the probability of the right label word among the label words."""
    top = max(row)
    weights = [math.exp(v - top) for v in row]  # shift by the max so exp never overflows
    return weights[gold] / sum(weights)


class GeneratedLabelClassifier(Objective):
    """Generate a short answer, parse it into a label with the verbaliser; unparseable counts as wrong."""

    maximize = True

    def __init__(self, template: Template, verbalizer: Verbalizer | Mapping[Any, str], *,
                 label_key: str = "label", metric: str = "accuracy", average: str = "macro",
                 pos_label: Any = None, max_new_tokens: int = 8, temperature: float = 0.0,
                 parse: Callable[[str], Any] | None = None, name: str | None = None) -> None:
        _check_metric(metric, average)
        self.template, self.label_key, self.metric, self.average = template, label_key, metric, average
        self.verbalizer = as_verbalizer(verbalizer)
        self.pos_label, self.max_new_tokens, self.temperature = pos_label, max_new_tokens, temperature
        self.parse = parse or self.verbalizer.parse
        self.name = name or (f"generated_{metric}" if metric == "accuracy" else f"generated_f1_{average}")

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> list[str]:
        return lm.generate(prompts_for(self.template, batch), max_new_tokens=self.max_new_tokens,
                           temperature=self.temperature, seed=seed)

    def score(self, batch: list[dict], outputs: list[str]) -> Score:
        texts = check_texts(self.name, outputs, len(batch))
        preds = [self.parse(t) for t in texts]
        return classification_score(self.name, preds, batch, self.verbalizer, self.label_key,
                                    self.metric, self.average, self.pos_label)


class MultipleChoice(Objective):
    """Pick the choice with the highest average per-token log-likelihood (MeZO's COPA/ReCoRD rule).

    Choices come from `example[choices_key]` (a list of strings); the gold is the index `example[label_key]`.
    Averaging over tokens (reduce="mean") keeps long choices from losing merely for being long.
    """

    maximize = True

    def __init__(self, template: Template, *, choices_key: str = "choices", label_key: str = "label",
                 name: str = "multiple_choice_accuracy") -> None:
        self.template, self.choices_key, self.label_key, self.name = template, choices_key, label_key, name

    def outputs(self, lm: LM, batch: list[dict], *, seed: int | None = None) -> list[list[float]]:
        choices = [list(ex[self.choices_key]) for ex in batch]
        return lm.choice_logliks(prompts_for(self.template, batch), choices, reduce="mean")

    def score(self, batch: list[dict], outputs: list[list[float]]) -> Score:
        if len(outputs) != len(batch):
            raise ObjectiveError(f"{self.name}: logliks has length {len(outputs)}, expected {len(batch)} (one per example)")
        per = []
        for i, (ex, row) in enumerate(zip(batch, outputs)):
            row = check_values(self.name, row, len(ex[self.choices_key]), what=f"logliks[{i}]")
            pred = max(range(len(row)), key=row.__getitem__)
            per.append(float(pred == int(ex[self.label_key])))
        return Score(per, sum(per) / len(per), self.name)
