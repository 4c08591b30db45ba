"""The benchmarks' rule reward and judge, and the recipe default that tunes generated text greedily.

Greedy tuning is a measured trap (benchmarks/QUALITY.md section 0.1): with sampling, one flipped token makes
f(theta+eps z) - f(theta-eps z) mostly noise, so the recipe must not sample by default.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import rules  # noqa: E402


def test_personal_reward_is_the_share_of_pronouns():
    assert rules.personal_reward([], ["I think you are right", "The sky is blue", ""]) == [0.4, 0.0, 0.0]


def test_plain_words_judge_prefers_shorter_words_and_ties_only_on_equal_length():
    assert rules.plain_words_judge("", "a cat sat", "extraordinary circumstances") == 1
    assert rules.plain_words_judge("", "extraordinary circumstances", "a cat sat") == -1
    assert rules.plain_words_judge("", "dog ran", "cat sat") == 0
    assert rules.plain_words_judge("", "", "a word") == -1  # no words loses


def test_vader_recipe_tunes_greedily_by_default():
    from objectives.recipes import vader_prompts

    assert vader_prompts()["objective"].generation.temperature == 0.0
    assert vader_prompts(temperature=0.7)["objective"].generation.temperature == 0.7
