"""The label-word margin objective on a tiny model, and the classification recipe's margin and held-back split."""

from __future__ import annotations

import pytest

from blackbox_zo.lm import TransformersLM
from objectives import LabelWordMargin, get_task
from objectives.recipes import classification, hold_back

SENTENCES = ["a gorgeous, witty film", "dull and far too long", "the best thing this year", "i want my money back",
             "clumsy and tired", "warm and moving", "an utter mess", "sharp, funny and kind"]
BATCH = [{"sentence": s, "label": str(i % 2)} for i, s in enumerate(SENTENCES)]


@pytest.fixture
def lm(tiny_llama):
    model, tok = tiny_llama
    return TransformersLM(model, tok, batch_size=4, use_chat_template=False)


def margin_objective(**kw):
    t = get_task("sst2")
    return LabelWordMargin(t.template, t.verbalizer(), **kw)


def test_value_is_the_hand_computed_mean_margin(lm):
    t = get_task("sst2")
    logits = lm.label_word_logits([t.prompt(ex) for ex in BATCH], t.verbalizer().word_list)  # [n, 2]: terrible, great
    hand = [float(row[int(ex["label"])] - row[1 - int(ex["label"])]) for row, ex in zip(logits, BATCH)]
    score = margin_objective().evaluate(lm, BATCH)
    assert score.per_example == pytest.approx(hand, abs=1e-6)
    assert score.value == pytest.approx(sum(hand) / len(hand), abs=1e-6)


def test_margin_sign_agrees_with_correctness_per_example(lm):
    margins = margin_objective().evaluate(lm, BATCH)
    right = get_task("sst2").objective().evaluate(lm, BATCH)
    assert len({m > 0 for m in margins.per_example}) == 2, "the tiny model should get some right and some wrong"
    assert [float(m > 0) for m in margins.per_example] == right.per_example
    assert margins.info["accuracy"] == pytest.approx(right.value)


def test_cap_limits_what_confident_examples_add(lm):
    plain = margin_objective().evaluate(lm, BATCH)
    cap = sorted(plain.per_example)[len(BATCH) // 2]
    capped = margin_objective(cap=max(cap, 1e-3)).evaluate(lm, BATCH)
    expected = sum(min(m, max(cap, 1e-3)) for m in plain.per_example) / len(BATCH)
    assert capped.value == pytest.approx(expected) and capped.value < plain.value


def test_content_free_calibration_shifts_each_word(lm):
    t = get_task("sst2")
    words = t.verbalizer().word_list
    cf = lm.label_word_logits(["N/A It was"], words)[0]
    logits = lm.label_word_logits([t.prompt(ex) for ex in BATCH], words)
    hand = [float((row[int(ex["label"])] - cf[int(ex["label"])]) - (row[1 - int(ex["label"])] - cf[1 - int(ex["label"])]))
            for row, ex in zip(logits, BATCH)]
    score = margin_objective(calibrate="content_free").evaluate(lm, BATCH)
    assert score.per_example == pytest.approx(hand, abs=1e-5)


def test_bad_cap_is_named():
    with pytest.raises(ValueError, match="cap must be a number > 0"):
        margin_objective(cap=0)


def write_tsv(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows))


def test_recipe_trains_on_margin_and_selects_on_a_held_back_split(tmp_path):
    rows = [{"sentence": f"review number {i}", "label": str(i % 2)} for i in range(40)]
    write_tsv(tmp_path / "train.tsv", rows[:20])
    write_tsv(tmp_path / "validation.tsv", rows[20:])
    task = classification(data=str(tmp_path), k=4, val_size=8, train_objective="margin", margin_cap=2.0, holdout=1)
    assert isinstance(task["objective"], LabelWordMargin) and task["objective"].cap == 2.0
    assert task["val_objective"].name == "label_word_accuracy"
    assert sorted(ex["label"] for ex in task["val"]) == ["0", "1"]  # one per class, held back from the 2k
    assert len(task["train"]) == 6 and not {ex["sentence"] for ex in task["val"]} & {ex["sentence"] for ex in task["train"]}
    assert {ex["sentence"] for ex in task["train"] + task["val"]} <= {r["sentence"] for r in rows[:20]}
    assert len(task["test"]) == 8  # validation.tsv, kept for the final report only
    with pytest.raises(ValueError, match="holdout must be an integer from 0 to k - 1 = 3, got 4"):
        classification(data=str(tmp_path), k=4, holdout=4)


def test_hold_back_takes_the_last_of_each_class():
    rows = [{"label": "a", "i": 0}, {"label": "b", "i": 1}, {"label": "a", "i": 2}, {"label": "b", "i": 3}]
    rest, held = hold_back(rows, 1)
    assert [r["i"] for r in rest] == [0, 1] and [r["i"] for r in held] == [2, 3]
    with pytest.raises(ValueError, match="leaves no training example of class 'a'"):
        hold_back(rows, 2)
