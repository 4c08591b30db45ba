"""Text metrics that show what tuning did to generated answers, including text with no words at all."""

import pytest

from objectives import distinct_n, repeated_token_trigrams, repeated_trigrams, text_metrics


def test_a_string_of_one_symbol_has_no_words_but_reads_as_repetition_on_tokens():
    broken = "&" * 20
    assert repeated_trigrams(broken) == 0.0  # the trap: no words, no word trigrams
    assert repeated_token_trigrams(broken) == pytest.approx(17 / 18)
    assert repeated_token_trigrams("The cat sat on the mat, then left.") == 0.0


def test_distinct_2_falls_when_answers_repeat_each_other():
    varied = ["a quick brown fox", "lazy dogs sleep all day"]
    assert distinct_n(varied) == 1.0
    assert distinct_n(["I. I. I.", "I. I. I."]) == pytest.approx(2 / 10)
    assert distinct_n([""]) == 0.0


def test_text_metrics_summarises_an_answer_set():
    m = text_metrics(["one two three", "I am a I am a I am a"], nll=[1.0, 2.0])
    assert m["nll"] == 1.5
    assert m["mean_length"] == 6.0
    assert m["repeated_trigrams"] == pytest.approx((0 + 4 / 7) / 2)
    with pytest.raises(ValueError, match="2 answers"):
        text_metrics(["a", "b"], nll=[1.0])
