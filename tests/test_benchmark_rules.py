"""The benchmarks' rule reward and judge, and the recipe default that tunes generated text greedily.

Greedy tuning is a measured trap (benchmarks/history/QUALITY.md section 0.1): with sampling, one flipped token makes
f(theta+eps z) - f(theta-eps z) mostly noise, so the recipe must not sample by default.
"""

import sys
from pathlib import Path

import pytest

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


def test_benchmark_space_and_spec_options_parse_and_name_bad_keys():
    """`--space include=norm noise=lowrank` reaches ParamSpace; a typo is named, not silently dropped."""
    from spec_args import space_overrides, spec_overrides

    assert space_overrides(["include=norm", "noise=lowrank", "mask_density=0.5"]) == {
        "include": "norm", "noise": "lowrank", "mask_density": 0.5}
    assert spec_overrides(["rule=raw", "lr=1e-6"]) == {"rule": "raw", "lr": 1e-6}
    with pytest.raises(SystemExit, match="inclde"):
        space_overrides(["inclde=norm"])
    with pytest.raises(SystemExit, match="lrr"):
        spec_overrides(["lrr=1"])


def test_classification_recipe_tiebreak_trains_on_accuracy_and_validates_plain(tmp_path):
    from objectives.recipes import classification

    for split in ("train.tsv", "validation.tsv"):
        rows = "\n".join(f"sentence {i}\t{i % 2}" for i in range(40))
        (tmp_path / split).write_text("sentence\tlabel\n" + rows + "\n")
    task = classification(data=str(tmp_path), k=4, val_size=8, train_objective="tiebreak")
    assert task["objective"].tiebreak and not task["val_objective"].tiebreak
    with pytest.raises(ValueError, match="train_objective must be"):
        classification(data=str(tmp_path), train_objective="f1")


def test_guarded_judge_makes_a_degenerate_answer_lose_to_a_fluent_one():
    fluent = "You can fix it by taking the old part out and putting a new one in its place."
    assert rules.plain_words_judge("", "A:\nA:\nA:\nA:", fluent) == 1  # the unguarded rule was gamed this way
    assert rules.guarded_plain_words_judge("", "A:\nA:\nA:\nA:", fluent) == -1
    assert rules.guarded_plain_words_judge("", fluent, "Consequently, the administrative procedure requires "
                                           "substantial documentation before any replacement occurs.") == 1
    assert rules.guarded_plain_words_judge("", "a b c", "a b") == 1  # both degenerate: more distinct words wins


def test_prompt_splits_share_no_topic_and_no_prompt():
    """Settings are chosen on TRAIN + DEV; a held-back set that shared a topic with them would not be held back."""
    import prompts

    splits = [prompts.TRAIN_TOPICS, prompts.DEV_TOPICS, prompts.TEST_TOPICS, prompts.TEST2_TOPICS]
    topics = [t for split in splits for t in split]
    assert len(set(topics)) == len(topics)
    texts = prompts.TRAIN + prompts.DEV + prompts.TEST + prompts.TEST2
    assert len(set(texts)) == len(texts) == 4 * len(topics)
