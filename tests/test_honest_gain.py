"""The benchmarks' honest gain: a reward gain counts only while the tuned answers stay text near the start's.

Why: issue 34 measured gains made of "I.\\n\\nI.\\n\\nI." and "&&&&&&&&"; the benchmark tables must print those as
missed, naming the bound, and count them as no gain in a mean over seeds.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from honest_gain import bounds_missed, honest_gain  # noqa: E402

from objectives import text_metrics  # noqa: E402

START = ["My weekend was calm and I read a book by the river.", "The dentist said my teeth look fine this year.",
         "Taxes are due in April, so I sorted the receipts early."]


def metrics(answers, nll):
    return text_metrics(answers, nll=[nll] * len(answers))


def test_fluent_answers_keep_their_gain():
    before = metrics(START, 0.9)
    after = metrics(["I spent my weekend with you and we cooked.", "You told me my teeth look fine.",
                     "We sorted our receipts early, you and I."], 1.0)
    out = honest_gain(0.05, 0.40, before, after)
    assert out["missed"] == []
    assert out["honest"] == out["counted"] == out["gain"] == 0.40 - 0.05
    assert out["shown"] == "+0.350"


def test_a_string_of_one_symbol_misses_on_token_repetition_although_it_has_no_words():
    before = metrics(START, 0.9)
    after = metrics(["&&&&&&&&&&&&&&&&&&&&"] * 3, 1.1)  # NLL inside the bound, no word trigrams at all
    out = honest_gain(0.05, 0.34, before, after)
    assert after["repeated_trigrams"] == 0.0
    assert out["honest"] is None and out["counted"] == 0.0
    assert [m.split()[0] for m in out["missed"]] == ["repeated_token_trigrams", "distinct_2"]
    assert out["shown"].startswith("missed (repeated_token_trigrams +")


def test_each_bound_is_inclusive_at_its_limit_and_crossed_just_above():
    before = {"nll": 1.0, "repeated_trigrams": 0.0, "repeated_token_trigrams": 0.0, "distinct_2": 0.70}
    at_limit = {"nll": 1.25, "repeated_trigrams": 0.02, "repeated_token_trigrams": 0.015, "distinct_2": 0.56}
    assert bounds_missed(before, at_limit) == []
    assert bounds_missed(before, {**at_limit, "nll": 1.31}) == ["nll +0.310 > +0.3"]
    assert bounds_missed(before, {**at_limit, "distinct_2": 0.55}) == ["distinct_2 0.79x < 0.8x"]
    assert bounds_missed(before, {**at_limit, "repeated_trigrams": 0.03}) == ["repeated_trigrams +0.030 > +0.02"]
