"""RewardModel on a tiny random GPT-2 / Llama sequence classifier saved to tmp_path with an offline tokenizer."""

import pytest
import torch

from objectives import Reward, RewardJudge, WeightedSum

WORDS = "the a movie film was is great terrible good bad very not it really quite plot acting".split()


def save_tiny_reward_model(path, arch="gpt2", num_labels=1):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        GPT2ForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]"] + WORDS)}
    wl = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    torch.manual_seed(0)
    if arch == "gpt2":
        config = GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                            num_labels=num_labels, pad_token_id=0)
        model = GPT2ForSequenceClassification(config)
    else:
        config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                             num_labels=num_labels, pad_token_id=0)
        model = LlamaForSequenceClassification(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory):
    return save_tiny_reward_model(tmp_path_factory.mktemp("rm"))


PROMPTS = ["the movie was", "it is", "the plot", "acting was", "the film"]
OUTS = [" great", " very very bad", " not good", " quite good really", " terrible terrible terrible plot acting"]


def test_scores_shape_determinism_and_batch_invariance(rm_path):
    from objectives import RewardModel

    rm = RewardModel(str(rm_path), batch_size=2)
    batch = [{"prompt": p} for p in PROMPTS]
    s = rm.score(batch, OUTS)
    assert len(s.per_example) == 5 and all(isinstance(v, float) for v in s.per_example)
    assert len(set(round(v, 6) for v in s.per_example)) > 1  # texts get different rewards
    assert rm.score(batch, OUTS).per_example == s.per_example  # deterministic
    alone = RewardModel(str(rm_path), batch_size=1).score_texts(PROMPTS, OUTS)
    assert alone == pytest.approx(s.per_example, abs=1e-5)  # padding does not change a score
    assert s.info == {"truncated": 0, "n": 5}
    assert s.value == pytest.approx(sum(s.per_example) / 5)


def test_truncation_counted(rm_path):
    from objectives import RewardModel

    rm = RewardModel(str(rm_path), max_length=4, batch_size=2)
    s = rm.score([{"prompt": p} for p in PROMPTS], OUTS)
    # token counts (whitespace words): 4, 5, 4, 5, 7 -> three exceed 4
    assert s.info["truncated"] == 3 and rm.truncated == 3
    # a truncated text scores as its first max_length tokens
    assert s.per_example[4] == pytest.approx(rm.score_texts(["the film"], [" terrible terrible"])[0], abs=1e-5)


def test_llama_multilabel_and_use_as_reward_and_judge(tmp_path):
    from objectives import RewardModel

    path = save_tiny_reward_model(tmp_path / "llama", arch="llama", num_labels=3)
    with pytest.raises(ValueError, match="pass label="):
        RewardModel(str(path))
    rm = RewardModel(str(path), label=2, dtype=torch.float32)
    scores = rm(PROMPTS, OUTS)
    # the reward is log p(label 2 | text), from the checkpoint run here on one unpadded text
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    plain = AutoModelForSequenceClassification.from_pretrained(path).eval()
    ids = AutoTokenizer.from_pretrained(path)(PROMPTS[1] + OUTS[1], return_tensors="pt")
    with torch.no_grad():
        want = torch.log_softmax(plain(**ids).logits.float(), dim=-1)[0, 2].item()
    assert scores[1] == pytest.approx(want, abs=1e-5)
    # as a TRL reward inside a weighted sum, and as a judge
    ws = WeightedSum([Reward(rm, name="rm")], [2.0])
    assert ws.score([{"prompt": p} for p in PROMPTS], OUTS).per_example == pytest.approx([2 * v for v in scores])
    verdict = RewardJudge(rm).compare(PROMPTS[0], OUTS[0], OUTS[1])
    assert verdict == (1 if scores[0] > rm([PROMPTS[0]], [OUTS[1]])[0] else -1)


def test_chat_template_used_when_present(tmp_path):
    from transformers import AutoTokenizer

    from objectives import RewardModel

    path = save_tiny_reward_model(tmp_path / "chat")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} [EOS] {% endfor %}"
    tok.save_pretrained(path)
    rm = RewardModel(str(path))
    assert rm.use_chat_template and rm.texts(["the plot"], ["was good"]) == ["user the plot [EOS] assistant was good [EOS] "]
    plain = RewardModel(str(path), use_chat_template=False)
    templated = plain(["user the plot [EOS] assistant"], [" was good [EOS] "])
    assert rm(["the plot"], ["was good"]) == pytest.approx(templated, abs=1e-6)
