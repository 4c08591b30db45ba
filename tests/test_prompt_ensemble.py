"""Prompt ensembles and calibration with reference inputs: hand values, a tiny model, the recipe and the task spec."""

from __future__ import annotations

import pytest

from blackbox_zo.lm import TransformersLM
from objectives import LabelWordClassifier, LabelWordMargin, get_task
from objectives.base import ObjectiveError
from objectives.recipes import classification

SENTENCES = ["a gorgeous, witty film", "dull and far too long", "the best thing this year", "i want my money back",
             "clumsy and tired", "warm and moving"]
BATCH = [{"sentence": s, "label": str(i % 2)} for i, s in enumerate(SENTENCES)]
REFERENCE = [{"sentence": s} for s in ("an ordinary film", "it rained", "two hours long")]  # no labels needed
SECOND = ("Review: {sentence}\nSentiment:", {"0": "negative", "1": "positive"})


@pytest.fixture
def lm(tiny_llama):
    model, tok = tiny_llama
    return TransformersLM(model, tok, batch_size=4, use_chat_template=False)


def test_reference_calibration_subtracts_the_reference_mean_per_class():
    batch = BATCH[:2]
    obj = LabelWordClassifier("{sentence} It was", {0: "terrible", 1: "great"}, calibrate="reference", reference=REFERENCE)
    rows = [[-1.0, -2.0], [-1.0, -1.2]]  # raw: both predict 0
    reference = [[-0.5, -2.0], [-1.5, -2.0], [-1.0, -2.0]]  # class means (-1, -2): [0, 0] -> tie -> 0 and [0, 0.8] -> 1
    score = obj.score(batch, {"logprobs": rows, "reference": reference})
    assert score.info["predictions"] == [0, 1] and score.value == 1.0
    assert obj.rows(batch, {"logprobs": rows, "reference": reference}) == [[0.0, 0.0], [0.0, pytest.approx(0.8)]]
    with pytest.raises(ObjectiveError, match="needs outputs\\['reference'\\]"):
        obj.score(batch, rows)


def test_ensemble_rows_are_the_mean_of_each_prompts_calibrated_rows():
    batch = BATCH[:2]
    obj = LabelWordClassifier("{sentence} It was", {0: "terrible", 1: "great"}, calibrate="content_free",
                              ensemble=[SECOND])
    views = [{"logprobs": [[-1.0, -2.0], [-3.0, -1.0]], "content_free": [-1.0, -1.0]},
             {"logprobs": [[-2.0, -1.0], [-1.0, -1.0]], "content_free": [-2.0, -0.5]}]
    # prompt 1 calibrated: [0, -1], [-2, 0]; prompt 2: [0, -0.5], [1, -0.5]; mean: [0, -0.75], [-0.5, -0.25]
    assert obj.rows(batch, {"views": views}) == [[0.0, -0.75], [-0.5, -0.25]]
    assert obj.score(batch, {"views": views}).info["predictions"] == [0, 1]
    with pytest.raises(Exception, match="expected 2"):
        obj.rows(batch, {"views": views[:1]})


def test_ensemble_on_a_model_equals_averaging_the_single_prompt_objectives(lm):
    single = [LabelWordClassifier(t, w, calibrate="reference", reference=REFERENCE)
              for t, w in [("{sentence} It was", {"0": "terrible", "1": "great"}), SECOND]]
    ensemble = LabelWordClassifier("{sentence} It was", {"0": "terrible", "1": "great"}, calibrate="reference",
                                   reference=REFERENCE, ensemble=[SECOND])
    each = [s.rows(BATCH, s.outputs(lm, BATCH)) for s in single]
    rows = ensemble.rows(BATCH, ensemble.outputs(lm, BATCH))
    for i in range(len(BATCH)):
        assert rows[i] == pytest.approx([(each[0][i][c] + each[1][i][c]) / 2 for c in range(2)], abs=1e-6)
    # the reference shifts the rows (the calibration is not a no-op on this model)
    plain = LabelWordClassifier("{sentence} It was", {"0": "terrible", "1": "great"}, ensemble=[SECOND])
    raw = plain.rows(BATCH, plain.outputs(lm, BATCH))
    assert max(abs(a - b) for r, q in zip(raw, rows) for a, b in zip(r, q)) > 1e-4


def test_margin_works_over_an_ensemble(lm):
    t = get_task({"name": "sst2", "template": "{sentence} It was", "label_words": {"0": "terrible", "1": "great"},
                  "ensemble": [{"template": SECOND[0], "label_words": SECOND[1]}]})
    margin = LabelWordMargin(t.template, t.verbalizer(), **t.classifier_options(), calibrate="reference",
                             reference=REFERENCE)
    accuracy = t.objective(calibrate="reference", reference=REFERENCE)
    m, a = margin.evaluate(lm, BATCH), accuracy.evaluate(lm, BATCH)
    assert [float(x > 0) for x in m.per_example] == a.per_example


def test_bad_calibration_and_ensemble_inputs_are_named():
    words = {"0": "terrible", "1": "great"}
    with pytest.raises(ValueError, match="needs reference"):
        LabelWordClassifier("{sentence}", words, calibrate="reference")
    with pytest.raises(ValueError, match="needs reference"):
        LabelWordClassifier("{sentence}", words, reference=REFERENCE)
    with pytest.raises(ValueError, match=r"ensemble\[0\] names labels"):
        LabelWordClassifier("{sentence}", words, ensemble=[("{sentence}", {"1": "good", "0": "bad"})])
    with pytest.raises(ValueError, match=r"ensemble\[1\] must be"):
        get_task({"name": "x", "template": "{sentence}", "label_words": words,
                  "ensemble": [{"template": "{sentence}", "label_words": words}, {"template": "{sentence}"}]})


def test_recipe_calibrates_with_the_training_inputs(tmp_path):
    rows = "sentence\tlabel\n" + "".join(f"film {i} was {'good' if i % 2 else 'bad'}\t{i % 2}\n" for i in range(40))
    for split in ("train.tsv", "validation.tsv"):
        (tmp_path / split).write_text(rows)
    task = classification(data=str(tmp_path), k=4, val_size=8, calibrate="reference", train_objective="margin", holdout=1)
    reference = [ex["sentence"] for ex in task["objective"].reference]
    assert sorted(reference) == sorted(ex["sentence"] for ex in task["train"] + task["val"])  # all 2k inputs
    assert task["val_objective"].reference == task["objective"].reference
