"""LoRA and prefix parameter spaces on tiny random Llama / GPT-2 models: what is tuned, what stays, equivalences."""

from __future__ import annotations

import pytest
import torch

from blackbox_zo import MeZO
from blackbox_zo.weights.spaces import DEFAULT_INIT_TEXT, PrefixLM, lora_space, prefix_space

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

VOCAB, PAD = 100, 0
INIT = [5, 6, 7, 8, 9]
X = torch.tensor([[11, 12, 13, 14, 15, 16], [PAD, PAD, 21, 22, 23, 24]])  # row 1 is left padded
MASK = (X != PAD).long()


def tiny_llama(vocab: int = VOCAB, dtype=torch.float32):
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharper logits: greedy decoding does not hinge on 1e-6 differences
        model.get_input_embeddings().weight.mul_(20)
        for layer in model.model.layers:  # sharp attention: at init std 0.02 it is near uniform, keys barely matter
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    return model.to(dtype)


def tiny_gpt2():
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                  pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(4)
    return model


MODELS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and much faster than on two on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def loss_closure(model, x=X, mask=MASK):
    labels = x.masked_fill(mask == 0, -100)
    return lambda: model(input_ids=x, attention_mask=mask, labels=labels).loss.item()


def base_snapshot(model, skip: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if skip not in n}


def assert_unchanged(model, snapshot: dict[str, torch.Tensor], skip: str) -> None:
    now = {n: p for n, p in model.named_parameters() if skip not in n}
    assert now.keys() == snapshot.keys()
    changed = [n for n in now if not torch.equal(now[n], snapshot[n])]
    assert not changed, f"base weights moved: {changed[:3]}"


# --- LoRA --------------------------------------------------------------------------------------------
def test_lora_space_holds_exactly_the_lora_tensors_with_peft_names():
    peft_model, space = lora_space(tiny_llama(), r=4)
    names = list(space.tensors)
    assert len(names) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)
    assert all("lora_" in n for n in names)
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight" in names
    assert "base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight" in names
    every_lora = {n for n, _ in peft_model.named_parameters() if "lora_" in n}
    assert set(names) == every_lora
    # q_proj: A [4, 32], B [32, 4]; v_proj (2 kv heads x 8): A [4, 32], B [16, 4]
    assert space.numel() == 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4)
    assert all(p.dtype == torch.float32 for p in space.tensors.values())


def test_lora_targets_and_space_kwargs_pass_through():
    _, space = lora_space(tiny_llama(), r=2, target_modules=["o_proj"], exclude=r"lora_B")
    assert space.tensors and all(".o_proj.lora_A." in n for n in space.tensors)
    _, gpt = lora_space(tiny_gpt2(), r=2)  # no q_proj/v_proj: peft's default for GPT-2 (fused c_attn)
    assert len(gpt.tensors) == 4 and all(".attn.c_attn.lora_" in n for n in gpt.tensors)


def test_lora_mezo_moves_zero_initialised_b_and_only_the_adapter():
    peft_model, space = lora_space(tiny_llama(), r=4)
    b_names = [n for n in space.tensors if "lora_B" in n]
    assert all(space.tensors[n].abs().max() == 0 for n in b_names)  # peft starts B at zero
    base = base_snapshot(peft_model, "lora_")
    with torch.no_grad():
        before = peft_model(input_ids=X, attention_mask=MASK).logits.clone()
    closure = loss_closure(peft_model)
    start = closure()
    opt = MeZO(space, lr=0.3, eps=1e-2, seed=0)
    for _ in range(30):
        opt.step(closure)
    assert all(space.tensors[n].abs().max() > 0 for n in b_names)
    assert_unchanged(peft_model, base, "lora_")
    with torch.no_grad():
        after = peft_model(input_ids=X, attention_mask=MASK).logits
    assert (after - before).abs().max() > 1e-3
    assert closure() < start  # it moved downhill, not just somewhere


def test_lora_merge_and_unload_gives_the_plain_tuned_model():
    peft_model, space = lora_space(tiny_llama(), r=4)
    opt = MeZO(space, lr=0.3, eps=1e-2, seed=1)
    for _ in range(5):
        opt.step(loss_closure(peft_model))
    with torch.no_grad():
        tuned = peft_model(input_ids=X, attention_mask=MASK).logits.clone()
    plain = peft_model.merge_and_unload()
    assert type(plain) is transformers.LlamaForCausalLM
    assert not any("lora" in n for n, _ in plain.named_modules())
    assert not any("lora" in n for n in plain.state_dict())
    with torch.no_grad():
        merged = plain(input_ids=X, attention_mask=MASK).logits
    torch.testing.assert_close(merged, tuned, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        untuned = tiny_llama()(input_ids=X, attention_mask=MASK).logits
    assert (merged - untuned).abs().max() > 1e-3  # the merge carried the tuned adapter


# --- prefix ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_prefix_names_shapes_and_frozen_base(arch):
    model = MODELS[arch]()
    wrapped, space = prefix_space(model, init_ids=INIT)
    assert isinstance(wrapped, PrefixLM) and wrapped.num_tokens == 5
    assert list(space.tensors) == [f"prefix.layers.{i}.{kv}" for i in range(2) for kv in ("key", "value")]
    heads = 2 if arch == "llama" else 4
    for p in space.tensors.values():
        assert p.shape == (heads, 5, 8) and p.dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())
    # a space built from the wrapper itself also sees only the prefix
    from blackbox_zo import ParamSpace

    assert list(ParamSpace(wrapped).tensors) == list(space.tensors)
    assert wrapped.config is model.config  # attribute fallthrough


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_initial_prefix_equals_running_the_model_on_init_text_first(arch):
    model = MODELS[arch]()
    wrapped, _ = prefix_space(model, init_ids=INIT)
    with torch.no_grad():
        got = wrapped(input_ids=X, attention_mask=MASK).logits
        ref0 = model(input_ids=torch.tensor([INIT + X[0].tolist()])).logits[0, 5:]
        ref1 = model(input_ids=torch.tensor([INIT + X[1, 2:].tolist()])).logits[0, 5:]
    torch.testing.assert_close(got[0], ref0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1, 2:], ref1, atol=1e-4, rtol=1e-4)  # left padding handled
    # positions given explicitly (0 at each row's first real token, as TransformersLM passes them)
    positions = (MASK.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        explicit = wrapped(input_ids=X, attention_mask=MASK, position_ids=positions, use_cache=False,
                           logits_to_keep=3).logits
    torch.testing.assert_close(explicit[1], ref1[-3:], atol=1e-4, rtol=1e-4)
    # labels: the loss over the inputs equals the plain model's loss over init + inputs, prefix unlabelled
    with torch.no_grad():
        loss = wrapped(input_ids=X[:1], labels=X[:1]).loss
        # the prefix has no logits, so the first input token is not predicted: leave it unlabelled too
        ref_loss = model(input_ids=torch.tensor([INIT + X[0].tolist()]),
                         labels=torch.tensor([[-100] * 6 + X[0, 1:].tolist()])).loss
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_prefix_generate_matches_generating_after_init_text(arch):
    model = MODELS[arch]()
    wrapped, _ = prefix_space(model, init_ids=INIT)
    with torch.no_grad():
        out = wrapped.generate(input_ids=X, attention_mask=MASK, max_new_tokens=6, do_sample=False, pad_token_id=PAD)
        ref0 = model.generate(input_ids=torch.tensor([INIT + X[0].tolist()]), max_new_tokens=6, do_sample=False,
                              pad_token_id=PAD)
        ref1 = model.generate(input_ids=torch.tensor([INIT + X[1, 2:].tolist()]), max_new_tokens=6,
                              do_sample=False, pad_token_id=PAD)
    assert out.shape == (2, 6 + 6)
    assert torch.equal(out[:, :6], X)  # like model.generate: inputs, then new tokens
    assert out[0, 6:].tolist() == ref0[0, -6:].tolist()
    assert out[1, 6:].tolist() == ref1[0, -6:].tolist()
    torch.manual_seed(0)
    sampled = wrapped.generate(input_ids=X, attention_mask=MASK, max_new_tokens=3, do_sample=True,
                               num_return_sequences=3, pad_token_id=PAD)
    assert sampled.shape == (6, 9)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_prefix_mezo_changes_outputs_and_leaves_base_alone(arch):
    model = MODELS[arch]()
    wrapped, space = prefix_space(model, init_ids=INIT)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    init = space.state_dict()
    with torch.no_grad():
        before = wrapped(input_ids=X, attention_mask=MASK).logits.clone()
    closure = loss_closure(wrapped)
    start = closure()
    opt = MeZO(space, lr=0.3, eps=1e-2, seed=0)
    for _ in range(10):
        opt.step(closure)
    assert closure() < start
    assert all(not torch.equal(space.tensors[n].detach(), init[n]) for n in init)
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters())
    with torch.no_grad():
        after = wrapped(input_ids=X, attention_mask=MASK).logits
        gen = wrapped.generate(input_ids=X, attention_mask=MASK, max_new_tokens=2, do_sample=False, pad_token_id=PAD)
    assert (after - before).abs().max() > 1e-3
    assert gen.shape == (2, 8)


def test_prefix_is_float32_for_a_bfloat16_model_and_runs():
    model = tiny_llama(dtype=torch.bfloat16)
    wrapped, space = prefix_space(model, init_ids=INIT)
    assert all(p.dtype == torch.float32 for p in space.tensors.values())
    assert space.master_weights is False  # already float32: no extra copies
    with torch.no_grad():
        got = wrapped(input_ids=X, attention_mask=MASK).logits
        ref = model(input_ids=torch.tensor([INIT + X[0].tolist()])).logits[0, 5:]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got[0].float(), ref.float(), atol=0.1, rtol=0.05)


def test_prefix_init_from_text_uses_the_tokenizer(tokenizer):
    model = tiny_llama(vocab=len(tokenizer))
    wrapped, _ = prefix_space(model, tokenizer, num_tokens=5)
    assert wrapped.init_ids == tokenizer(DEFAULT_INIT_TEXT)["input_ids"][:5]
    short, _ = prefix_space(tiny_llama(vocab=len(tokenizer)), tokenizer, num_tokens=7, init_text="Hi")
    assert len(short.init_ids) == 7  # short text is repeated to fill the prefix
    with pytest.raises(ValueError, match="tokenizer"):
        prefix_space(tiny_llama(), None)
