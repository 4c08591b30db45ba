"""Metric values against hand computation: accuracy/F1, SQuAD EM/F1 normalisation, NLL, label words, choices."""

import pytest

from objectives import (
    GeneratedLabelClassifier,
    LabelWordClassifier,
    MultipleChoice,
    NegativeLogLikelihood,
    SquadObjective,
    Verbalizer,
    accuracy,
    exact_match,
    f1,
    normalize_answer,
    token_f1,
)

SST2 = {0: "terrible", 1: "great"}


def test_accuracy_and_f1_hand_values():
    preds, golds = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(preds, golds) == pytest.approx(3 / 5)
    # class 1: TP 2, FP 1, FN 1 -> P = R = 2/3 -> F1 2/3; class 0: TP 1, FP 1, FN 1 -> 1/2
    assert f1(preds, golds, average="binary") == pytest.approx(2 / 3)
    assert f1(preds, golds, average="macro") == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert f1(preds, golds, average="micro") == pytest.approx(3 / 5)
    assert f1(["1", "0"], [1, 0], average="binary") == 1.0  # "1" from a TSV equals 1


def test_f1_unparsed_prediction_counts_as_wrong():
    preds, golds = [1, None, 0], [1, 0, 0]
    assert accuracy(preds, golds) == pytest.approx(2 / 3)
    # over labels {0, 1}: pooled TP 2, FP 0, FN 1 -> P 1, R 2/3 -> micro F1 0.8
    assert f1(preds, golds, average="micro", labels=[0, 1]) == pytest.approx(0.8)
    # class 0: P 1, R 1/2 -> 2/3; class 1: 1 -> macro 5/6
    assert f1(preds, golds, average="macro", labels=[0, 1]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        f1(preds, golds, average="weighted")


@pytest.mark.parametrize("text, expected", [
    ("The Theatre!", "theatre"),  # article removed, "the" inside "theatre" kept
    ("An apple a day", "apple day"),
    ("banana and anthem", "banana and anthem"),
    ("  New   York \n", "new york"),
    ("well-known", "wellknown"),  # punctuation dropped, not replaced by a space
    ("...!?", ""),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_token_f1_edge_cases():
    assert exact_match("theatre", "The theatre.") == 1.0
    assert exact_match("well known", "well-known") == 0.0
    assert exact_match("Paris", ["London", "paris!"]) == 1.0  # max over golds
    # pred {cat, sat} vs gold {cat, sat, down}: P 1, R 2/3 -> F1 0.8; the other gold scores 0
    assert token_f1("the cat sat", ["dog", "a cat sat down"]) == pytest.approx(0.8)
    # repeated tokens count as a multiset: "a" is an article; pred [b, b] vs gold [b, b, b]
    assert token_f1("a b b", "b b b") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert token_f1("", "Paris") == 0.0 and exact_match("", "Paris") == 0.0  # empty prediction
    assert token_f1("", "...") == 1.0 and exact_match("", "...") == 1.0  # punctuation-only gold
    assert token_f1("x", "...") == 0.0
    assert token_f1("The", "a") == 1.0  # both normalise to empty


def test_squad_objective_score_mean_and_gold_formats():
    obj = SquadObjective("Q: {question}\nA:", metric="f1")
    batch = [{"question": "q1", "answers": {"text": ["the cat sat down"]}},
             {"question": "q2", "answers": ["Paris", "paris, France"]},
             {"question": "q3", "answers": "1912"}]
    s = obj.score(batch, ["cat sat", "Paris", "1913"])
    assert s.per_example == pytest.approx([0.8, 1.0, 0.0])
    assert s.value == pytest.approx(0.6) and s.name == "squad_f1"
    assert SquadObjective(None, metric="em").score(batch, ["cat sat", "Paris", "1913"]).value == pytest.approx(1 / 3)


def test_nll_is_negated_loglik_and_minimised():
    obj = NegativeLogLikelihood("{x}", "y")
    assert obj.maximize is False and obj.name == "cross_entropy"
    s = obj.score([{"x": "a", "y": "b"}] * 2, [-1.5, -0.5])
    assert s.per_example == [1.5, 0.5] and s.value == pytest.approx(1.0)
    assert NegativeLogLikelihood("{x}", "y", reduce="sum").name == "nll"


def test_label_word_accuracy_and_calibration():
    batch = [{"sentence": "a", "label": "0"}, {"sentence": "b", "label": "1"}]
    rows = [[-1.0, -2.0], [-1.0, -1.2]]  # raw: both predict 0 -> accuracy 1/2
    raw = LabelWordClassifier("{sentence} It was", SST2)
    s = raw.score(batch, {"logprobs": rows})
    assert s.value == 0.5 and s.per_example == [1.0, 0.0] and s.info["predictions"] == [0, 0]
    # batch calibration: column means (-1, -1.6) -> [0, -0.4] -> 0 and [0, 0.4] -> 1
    assert LabelWordClassifier("{sentence} It was", SST2, calibrate="batch").score(batch, rows).value == 1.0
    # content-free: subtract (-0.5, -1.5) -> [-0.5, -0.5] (tie: first label) and [-0.5, 0.3] -> 1
    cf = LabelWordClassifier("{sentence} It was", SST2, calibrate="content_free")
    assert cf.content_free_prompt == "N/A It was"
    assert cf.score(batch, {"logprobs": rows, "content_free": [-0.5, -1.5]}).value == 1.0


def test_label_word_f1_macro_with_three_classes():
    verb = {"0": "bad", "1": "okay", "2": "good"}
    obj = LabelWordClassifier("{s}", verb, metric="f1", average="macro")
    batch = [{"s": "", "label": lab} for lab in (0, 1, 2, 2)]
    rows = [[0, -1, -2], [0, -1, -2], [-2, -1, 0], [-2, 0, -1]]  # predicts 0, 0, 2, 1
    # class 0: P 1/2 R 1 -> 2/3; class 1: P 0 -> 0; class 2: P 1 R 1/2 -> 2/3
    assert obj.score(batch, rows).value == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    assert obj.name == "label_word_f1_macro"


def test_verbalizer_parse_and_generated_label_classifier():
    v = Verbalizer(SST2)
    assert v.parse(" Great movie") == 1
    assert v.parse("it was not terrible, it was great") == 0  # earliest whole-word occurrence
    assert v.parse("greatest") is None and v.index("1") == 1
    obj = GeneratedLabelClassifier("{sentence} It was", SST2, metric="f1", average="binary")
    batch = [{"sentence": "x", "label": 1}, {"sentence": "y", "label": 0}, {"sentence": "z", "label": 1}]
    s = obj.score(batch, [" great!", " terrible.", " hmm"])
    assert s.per_example == [1.0, 1.0, 0.0]
    assert s.value == pytest.approx(2 / 3)  # class 1: P 1, R 1/2


def test_multiple_choice_by_mean_loglik():
    obj = MultipleChoice("{premise}")
    batch = [{"premise": "p", "choices": ["a", "b", "c"], "label": 2},
             {"premise": "q", "choices": ["a", "b"], "label": 0}]
    s = obj.score(batch, [[-3.0, -2.0, -1.0], [-1.0, -0.5]])
    assert s.per_example == [1.0, 0.0] and s.value == 0.5


def test_accuracy_tiebreak_decides_plateaus_but_never_outweighs_a_flip():
    """Two answers with the same accuracy differ by the gold words' probability; one more right answer wins."""
    batch = [{"sentence": "a", "label": 1}, {"sentence": "b", "label": 0}]
    obj = LabelWordClassifier("{sentence} It was", SST2, tiebreak=True)
    both_great = obj.score(batch, [[-3.0, -1.0], [-3.0, -1.0]])  # accuracy 0.5, second example far off
    closer = obj.score(batch, [[-3.0, -1.0], [-2.0, -1.9]])  # accuracy 0.5, second example nearly right
    assert both_great.info["accuracy"] == closer.info["accuracy"] == 0.5
    assert closer.value > both_great.value
    barely_right = obj.score(batch, [[-1.0, -1.01], [-1.0, -1.01]])  # accuracy 0.5 -> one flip, low p(gold)
    confident_half = obj.score(batch, [[-9.0, -0.0], [-9.0, -0.0]])  # accuracy 0.5, first p(gold) ~ 1
    assert barely_right.info["accuracy"] == 0.5 and confident_half.value < 0.5 + 1 / 2
    all_right_barely = obj.score(batch, [[-1.0, -0.99], [-0.99, -1.0]])
    assert all_right_barely.value > confident_half.value  # one more right example beats any probability gain
    assert all_right_barely.per_example == [1.0, 1.0] and obj.name == "label_word_accuracy_tiebreak"
    with pytest.raises(ValueError, match="tiebreak applies to metric='accuracy'"):
        LabelWordClassifier("{sentence} It was", SST2, metric="f1", tiebreak=True)
