"""Prompt templates as plain data (JSON-able dicts): MeZO's SST-2/SST-5/RTE/CB/BoolQ/SQuAD prompts and label words.

A `Task` turns an example into a prompt and builds the matching objective; users add their own as dicts or JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Templates of Malladi et al. 2023 (MeZO, appendix E / templates.py); "{field}" = the example's column.
TEMPLATES: dict[str, dict[str, Any]] = {
    "sst2": {"template": "{sentence} It was", "label_words": {"0": "terrible", "1": "great"}},
    "sst5": {"template": "{sentence} It was",
             "label_words": {"0": "terrible", "1": "bad", "2": "okay", "3": "good", "4": "great"}},
    "rte": {"template": '{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n',
            "label_words": {"0": "Yes", "1": "No"}},  # RTE label 0 = entailment
    "cb": {"template": 'Suppose {premise} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\n',
           "label_words": {"0": "Yes", "1": "No", "2": "Maybe"}},
    # the built-in news topics (objectives.builtin.topic_examples); not a MeZO prompt
    "topics": {"template": "{sentence}\nTopic:",
               "label_words": {"0": "sports", "1": "business", "2": "science", "3": "politics"}},
    "boolq": {"template": "{passage} {question}?", "label_words": {"0": "No", "1": "Yes"}},
    "squad": {"template": "Title: {title}\nContext: {context}\nQuestion: {question}\nAnswer:",
              "kind": "qa", "answers_key": "answers"},
    # COPA: the example carries connective "because" (cause) or "so" (effect) and its two choices.
    "copa": {"template": "{premise} {connective}", "kind": "multiple_choice", "choices_key": "choices"},
}


@dataclass(frozen=True)
class Task:
    """A prompt template plus what is scored: label words (classification), choices, or answers (QA)."""

    name: str
    template: str
    label_words: dict[str, str] = field(default_factory=dict)
    kind: str = "classification"  # "classification" | "multiple_choice" | "qa"
    label_key: str = "label"
    choices_key: str = "choices"
    answers_key: str = "answers"
    # more prompts for the same classes, [{"template": ..., "label_words": {...}}]: their label-word scores are averaged
    ensemble: tuple[dict, ...] = ()

    def prompt(self, example: dict) -> str:
        return self.template.format_map(example)

    def verbalizer(self):
        from .classification import Verbalizer
        if not self.label_words:
            raise ValueError(f"task {self.name!r} has no label words")
        return Verbalizer(dict(self.label_words))

    def objective(self, **kwargs: Any):
        """The natural objective: label-word scoring, multiple choice, or SQuAD F1 (kwargs pass through)."""
        if self.kind == "classification":
            from .classification import LabelWordClassifier
            return LabelWordClassifier(self.template, self.verbalizer(), **self.classifier_options(), **kwargs)
        if self.kind == "multiple_choice":
            from .classification import MultipleChoice
            return MultipleChoice(self.template, choices_key=self.choices_key, label_key=self.label_key, **kwargs)
        if self.kind == "qa":
            from .qa import SquadObjective
            return SquadObjective(self.template, answers_key=self.answers_key, **kwargs)
        raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}")

    def classifier_options(self) -> dict[str, Any]:
        """label_key and the ensemble's (template, label words) pairs, as LabelWordClassifier and its subclasses take them."""
        return {"label_key": self.label_key,
                "ensemble": [(p["template"], {str(k): v for k, v in p["label_words"].items()}) for p in self.ensemble]}


def task_from_dict(name: str, spec: dict[str, Any]) -> Task:
    ensemble = tuple(spec.get("ensemble", ()))
    for i, prompt in enumerate(ensemble):
        if not isinstance(prompt, dict) or set(prompt) != {"template", "label_words"}:
            raise ValueError(f"task {name!r}: ensemble[{i}] must be {{'template': ..., 'label_words': {{...}}}}, got {prompt!r}")
    return Task(name=name, **{**spec, "label_words": {str(k): v for k, v in spec.get("label_words", {}).items()},
                              "ensemble": ensemble})


def get_task(name_or_spec: str | dict[str, Any] | Path) -> Task:
    """A built-in task by name ("sst2"), a dict spec, or a JSON file holding one spec (named after the file)."""
    if isinstance(name_or_spec, dict):
        spec = dict(name_or_spec)
        return task_from_dict(spec.pop("name", "custom"), spec)
    path = Path(name_or_spec)
    if path.suffix == ".json" and path.exists():
        spec = json.loads(path.read_text())
        return task_from_dict(spec.pop("name", path.stem), spec)
    if str(name_or_spec) not in TEMPLATES:
        raise KeyError(f"unknown task {name_or_spec!r}; built-in: {sorted(TEMPLATES)}")
    return task_from_dict(str(name_or_spec), TEMPLATES[str(name_or_spec)])
