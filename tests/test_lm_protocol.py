"""Both LM classes satisfy the one LM protocol with the same signatures, and objectives never import the engine.

The vLLM instance check lives in tests/test_vllm_backend.py (marker `vllm`); the class-level checks here run
without vLLM because importing blackbox_zo.vllm.backend does not import vllm.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from blackbox_zo.lm import LM, TransformersLM
from blackbox_zo.vllm.backend import VLLMBackend

CALLS = ["loglik", "choice_logliks", "label_word_logits", "generate"]


def parameters(function) -> list[tuple[str, object]]:
    """(name, default) of each parameter after self: what a caller of the protocol relies on."""
    return [(p.name, p.default) for p in list(inspect.signature(function).parameters.values())[1:]]


def test_transformers_lm_instance_satisfies_the_protocol(tiny_llama):
    model, tok = tiny_llama
    assert isinstance(TransformersLM(model, tok), LM)
    assert not isinstance(object(), LM)  # the check looks at the methods, it does not accept anything


@pytest.mark.parametrize("cls", [TransformersLM, VLLMBackend])
def test_classes_implement_every_call_with_the_protocol_signature(cls):
    assert issubclass(cls, LM)
    for name in CALLS:
        assert parameters(getattr(cls, name)) == parameters(getattr(LM, name)), f"{cls.__name__}.{name}"


def test_objectives_do_not_import_the_engine():
    """objectives/ types `lm` against blackbox_zo.lm.LM only under TYPE_CHECKING: at run time it imports only the
    torch-free error module it shares with the engine (and the package's lazy root)."""
    code = ("import sys, objectives, objectives.recipes, objectives.classification, objectives.judges;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'blackbox_zo'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(["blackbox_zo", "blackbox_zo._lazy", "blackbox_zo.errors"])


def test_one_objective_error_class():
    """The engine, the CLI and the objectives raise and catch one class (the CLI answers it with exit 2)."""
    from blackbox_zo import ObjectiveError
    from blackbox_zo.step.estimators import ObjectiveError as from_estimators
    from objectives.base import ObjectiveError as from_objectives

    assert from_objectives is ObjectiveError is from_estimators


def test_objectives_annotate_lm_with_the_protocol():
    from objectives import base, classification, generation, judges, likelihood

    for cls in (base.Objective, classification.LabelWordClassifier, classification.MultipleChoice,
                likelihood.NegativeLogLikelihood, generation.CompletionObjective):
        annotation = inspect.signature(cls.outputs).parameters["lm"].annotation
        assert annotation == "LM", f"{cls.__name__}.outputs(lm: {annotation})"
    assert inspect.signature(generation.Generation.run).parameters["lm"].annotation == "LM"
    for function in (judges.PairwiseObjective.generate, judges.preference):
        assert inspect.signature(function).parameters["lm"].annotation == "LM", function.__qualname__
