"""BestOfN: each prompt's best sampled completion becomes a cross-entropy target scored where generate left off."""

from __future__ import annotations

import pytest

from blackbox_zo import MeZO, ParamSpace
from blackbox_zo.lm import TransformersLM
from blackbox_zo.lm.tokens import generation_ids
from objectives import Generation, Reward
from objectives.best_of_n import BestOfN

PROMPTS = ["The quick brown fox", "What is the capital of France?", "one two three"]


def length_reward(prompts, completions, **columns):
    return [float(len(c)) for c in completions]


def test_refresh_keeps_the_best_of_each_group_of_k_samples(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok)
    bon = BestOfN(Reward(length_reward, generation=Generation(max_new_tokens=6)), k=4)
    rows = [{"prompt": p, "id": i} for i, p in enumerate(PROMPTS)]
    kept, stats = bon.refresh(lm, rows, seed=7)
    # the same seeded draw, redone here: 4 samples per prompt, grouped
    again = lm.generate([p for p in PROMPTS for _ in range(4)], max_new_tokens=6, temperature=1.0, seed=7)
    groups = [again[4 * i:4 * i + 4] for i in range(len(PROMPTS))]
    expected = [(i, max(g, key=len)) for i, g in enumerate(groups) if len(max(g, key=len)) > sum(map(len, g)) / 4]
    assert expected, "the tiny model's samples should differ in length"
    assert [(r["id"], r["target"]) for r in kept] == expected
    assert all(r["reward"] == len(r["target"]) for r in kept)
    assert stats["completions"] == 12 and stats["kept"] == len(expected)
    assert stats["best_reward"] > stats["sampled_reward"]


def test_groups_whose_samples_all_tie_teach_nothing(tiny_llama):
    model, tok = tiny_llama
    bon = BestOfN(Reward(lambda prompts, completions: [1.0] * len(completions)), k=3)
    kept, stats = bon.refresh(TransformersLM(model, tok), [{"prompt": p} for p in PROMPTS], seed=0)
    assert kept == [] and stats["kept"] == 0 and stats["best_reward"] == stats["sampled_reward"] == 1.0


def test_targets_are_scored_after_the_text_generate_continued(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok)
    assert lm.use_chat_template  # the fixture tokenizers carry one: the context must include it
    kept, _ = BestOfN(Reward(length_reward, generation=Generation(max_new_tokens=4)), k=2).refresh(
        lm, [{"prompt": PROMPTS[0]}], seed=3)
    context = kept[0]["context"]
    assert context != PROMPTS[0] and PROMPTS[0] in context
    assert tok(context, add_special_tokens=False)["input_ids"] == generation_ids(tok, PROMPTS[0], True, None, 4)


def test_zeroth_order_steps_raise_the_likelihood_of_the_winners(tiny_llama):
    model, tok = tiny_llama
    lm = TransformersLM(model, tok)
    bon = BestOfN(Reward(length_reward, generation=Generation(max_new_tokens=6)), k=4)
    kept, _ = bon.refresh(lm, [{"prompt": p} for p in PROMPTS], seed=1)
    before = bon.evaluate(lm, kept).value
    opt = MeZO(ParamSpace(model, include="layers[.]1[.]"), eps=1e-2, lr=1e-2)
    for _ in range(40):
        opt.step(lambda: bon.evaluate(lm, kept).value)
    assert bon.evaluate(lm, kept).value < before - 0.05


@pytest.mark.parametrize("kwargs, message", [({"k": 1}, "k .* >= 2"), ({"temperature": 0.0}, "temperature")])
def test_settings_that_cannot_work_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BestOfN(Reward(length_reward), **kwargs)


def test_the_trainer_draws_a_round_every_steps_per_round_and_validates_on_the_reward(tiny_llama):
    from blackbox_zo.running.trainer import Trainer
    from blackbox_zo.setup.config import TrainConfig

    model, tok = tiny_llama
    lm = TransformersLM(model, tok)
    reward = Reward(length_reward, generation=Generation(max_new_tokens=6))
    bon = BestOfN(reward, k=3, steps_per_round=2)
    rows = [{"prompt": p} for p in PROMPTS]
    trainer = Trainer(lm, MeZO(model, eps=1e-2, lr=1e-2), bon, rows, val_objective=reward, val_data=rows[:1],
                      config=TrainConfig(steps=5, batch_size=2, eval_every=5, progress=False, plot=False))
    result = trainer.fit()
    rounds = [r for r in result.history if "round" in r]
    assert [r["step"] for r in rounds] == [1, 3, 5]  # a round drawn before steps 1, 3, 5 (rows count updates)
    assert all(r["round"]["kept"] >= 1 and r["round"]["completions"] == 9 for r in rounds)
    assert result.history[-1]["val"] == reward.evaluate(lm, rows[:1]).value  # validation scores the reward


def test_a_reward_that_never_separates_samples_stops_the_trainer_with_a_reason(tiny_llama):
    from blackbox_zo.running.trainer import Trainer
    from blackbox_zo.setup.config import TrainConfig

    model, tok = tiny_llama
    bon = BestOfN(Reward(lambda prompts, completions: [0.5] * len(completions)), k=2)
    trainer = Trainer(TransformersLM(model, tok), MeZO(model), bon, [{"prompt": p} for p in PROMPTS],
                      config=TrainConfig(steps=2, progress=False, plot=False))
    with pytest.raises(RuntimeError, match="same value"):
        trainer.fit()
