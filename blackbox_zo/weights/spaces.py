"""Parameter spaces for parameter-efficient tuning: LoRA adapters (via peft) and key/value prefixes.

Both return `(model, ParamSpace)`: the model to evaluate the objective with and the space of the only
tensors MeZO perturbs. Prefix tuning follows the MeZO paper: trainable per-layer key/value tokens
initialised from the model's own activations on real text, held as float32 parameters.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from blackbox_zo.weights.params import ParamSpace
from blackbox_zo.weights.population import reads_own_offsets, row_offsets

DEFAULT_INIT_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs back into the quiet green forest."
MEZO_LORA_TARGETS = ("q_proj", "v_proj")


# --- LoRA -------------------------------------------------------------------------------------------
def lora_space(
    model: nn.Module,
    r: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] | str | None = None,
    dropout: float = 0.0,
    **space_kwargs: Any,
) -> tuple[nn.Module, ParamSpace]:
    """Wrap a causal LM in peft LoRA adapters and return (peft_model, ParamSpace over the `lora_` tensors only).

    Default targets are MeZO's q_proj and v_proj where the model has them; otherwise (e.g. GPT-2's fused
    c_attn) peft's default for the architecture. The base model is modified in place (peft injects the
    adapter layers and freezes the base weights). LoRA B starts at zero; SPSA still moves it because
    perturbing A and B together changes the output by eps * z_B A + O(eps^2). Dropout defaults to 0: a ZO
    objective must be deterministic. Names are peft's (`base_model.model....lora_A.default.weight`).
    """
    from peft import LoraConfig, get_peft_model

    if target_modules is None:
        leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        target_modules = list(MEZO_LORA_TARGETS) if set(MEZO_LORA_TARGETS) <= leaves else None
    elif not isinstance(target_modules, str):
        target_modules = list(target_modules)
    config = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=target_modules)
    peft_model = get_peft_model(model, config)
    tensors = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    if not tensors:
        raise ValueError(f"LoRA with target_modules={target_modules!r} added no lora_ tensors to the model")
    return peft_model, ParamSpace(tensors, module=peft_model, small=True, **space_kwargs)


# --- prefix tuning ----------------------------------------------------------------------------------
def _self_attention_cache(cache):
    """The decoder self-attention cache (GPT-2 with cross-attention returns an EncoderDecoderCache)."""
    return getattr(cache, "self_attention_cache", cache)


class PrefixLM(nn.Module):
    """A causal LM with `num_tokens` trainable key/value tokens in front of every layer's attention.

    Parameters `prefix.layers.{i}.key` / `.value` have shape [kv_heads, num_tokens, head_dim] (float32,
    whatever the model's dtype); the keys are stored as the cache holds them (after RoPE for Llama). Each
    call builds a fresh DynamicCache from them, so forward and generate see the current (perturbed) values.
    The prefix occupies positions 0..num_tokens-1; inputs start at position num_tokens. Attributes the
    wrapper lacks (config, generation_config, device, ...) are looked up on the wrapped model.
    """

    def __init__(self, model: nn.Module, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor],
                 init_ids: Sequence[int] | None = None):
        super().__init__()
        if len(keys) != len(values) or not keys:
            raise ValueError("need one key and one value tensor per layer")
        self.model = model
        self.prefix = nn.Module()
        self.prefix.layers = nn.ModuleList()
        for k, v in zip(keys, values):
            layer = nn.Module()
            layer.key = reads_own_offsets(nn.Parameter(k.detach().to(torch.float32).clone().contiguous()))
            layer.value = reads_own_offsets(nn.Parameter(v.detach().to(torch.float32).clone().contiguous()))
            self.prefix.layers.append(layer)
        self.num_tokens = int(keys[0].shape[-2])
        self.kv_dtype = keys[0].dtype  # the dtype the model's attention expects
        self.init_ids = list(init_ids) if init_ids is not None else None

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    def prefix_parameters(self) -> dict[str, nn.Parameter]:
        """{'prefix.layers.0.key': ..., 'prefix.layers.0.value': ..., ...}: the tuned tensors."""
        return dict(self.prefix.named_parameters(prefix="prefix"))

    def prefix_cache(self, batch_size: int):
        """A fresh DynamicCache holding the prefix for `batch_size` rows (copies: the cache never aliases parameters)."""
        from transformers import DynamicCache

        data = []
        for layer in self.prefix.layers:
            kv = []
            for t in (layer.key, layer.value):
                offsets = row_offsets(t, batch_size)  # inside a batched population: each row's member's prefix
                rows = t.unsqueeze(0).expand(batch_size, -1, -1, -1) if offsets is None else t + offsets
                kv.append(rows.to(self.kv_dtype))
            data.append(tuple(kv))
        return DynamicCache(data, config=self.model.config)

    def _extend_mask(self, mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(batch, length, dtype=torch.long, device=device)
        ones = torch.ones(batch, self.num_tokens, dtype=mask.dtype, device=mask.device)
        return torch.cat([ones, mask], dim=1)  # the prefix is always attended to

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, **kwargs):
        """The wrapped model's forward with the prefix in front (labels, logits_to_keep, ... pass through).

        `attention_mask` and `position_ids` describe the inputs only: the mask is extended over the prefix,
        and positions are shifted by num_tokens (when not given they count the real tokens of each row, so
        a left-padded row sees the same positions as an unpadded one). With `past_key_values` (a cache
        returned by an earlier call, which already holds the prefix) the call continues that cache.
        """
        ref = input_ids if input_ids is not None else inputs_embeds
        batch, length = ref.shape[0], ref.shape[1]
        if past_key_values is not None:  # continuation: the cache already starts with the prefix
            cached = past_key_values.get_seq_length()
            if attention_mask is not None and attention_mask.shape[1] + self.num_tokens == cached + length:
                attention_mask = self._extend_mask(attention_mask, batch, length, ref.device)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              past_key_values=past_key_values, inputs_embeds=inputs_embeds, **kwargs)
        if position_ids is None and attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if position_ids is not None:
            position_ids = position_ids + self.num_tokens
        return self.model(
            input_ids=input_ids,
            attention_mask=self._extend_mask(attention_mask, batch, length, ref.device),
            position_ids=position_ids,
            past_key_values=self.prefix_cache(batch),
            inputs_embeds=inputs_embeds,
            **kwargs,
        )

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        """The wrapped model's generate with the prefix cache; returns inputs + new tokens, like the model's."""
        if kwargs.get("past_key_values") is not None:
            raise ValueError("PrefixLM.generate builds its own prefix cache; do not pass past_key_values")
        if input_ids is None:
            raise ValueError("PrefixLM.generate needs input_ids")
        gen_config = kwargs.get("generation_config") or self.model.generation_config
        beams = kwargs.get("num_beams", gen_config.num_beams) or 1
        returns = kwargs.get("num_return_sequences", gen_config.num_return_sequences) or 1
        expand = max(beams, returns)  # generate repeats inputs (not caches) this many times per row
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + self.num_tokens
        batch, length = input_ids.shape
        # The mask is longer than input_ids by num_tokens: generate treats input_ids as the new tokens after
        # the cache and derives positions from the mask (cumsum), so inputs start at position num_tokens.
        return self.model.generate(
            input_ids=input_ids,
            attention_mask=self._extend_mask(attention_mask, batch, length, input_ids.device),
            past_key_values=self.prefix_cache(batch * expand),
            **kwargs,
        )


def _init_ids(tokenizer, num_tokens: int, init_text: str | None) -> list[int]:
    text = init_text or DEFAULT_INIT_TEXT
    ids = list(tokenizer(text)["input_ids"])
    if not ids:
        raise ValueError(f"init_text {text!r} tokenizes to nothing")
    while len(ids) < num_tokens:  # short text: repeat it (without special tokens) until long enough
        more = list(tokenizer(" " + text, add_special_tokens=False)["input_ids"]) or ids
        ids.extend(more)
    return ids[:num_tokens]


def prefix_space(
    model: nn.Module,
    tokenizer=None,
    num_tokens: int = 5,
    init_text: str | None = None,
    *,
    init_ids: Sequence[int] | None = None,
    freeze_base: bool = True,
    **space_kwargs: Any,
) -> tuple[PrefixLM, ParamSpace]:
    """Prefix tuning (MeZO): (PrefixLM, ParamSpace over its `prefix.layers.{i}.key/value` float32 tensors).

    The prefix is initialised from real activations: the model is run on the first `num_tokens` tokens of
    `init_text` (default DEFAULT_INIT_TEXT; `init_ids` gives the token ids directly, no tokenizer needed)
    and each layer's cached keys/values become the parameters. So before any step, the wrapped model on x
    equals the plain model on init_ids + x. `freeze_base` sets requires_grad=False on the base weights
    (as peft does), so a ParamSpace or MeZO built from the wrapper itself also tunes only the prefix.
    """
    if init_ids is None:
        if tokenizer is None:
            raise ValueError("prefix_space needs a tokenizer (or init_ids) to initialise the prefix")
        init_ids = _init_ids(tokenizer, num_tokens, init_text)
    init_ids = [int(i) for i in init_ids][:num_tokens]
    if len(init_ids) != num_tokens or num_tokens < 1:
        raise ValueError(f"need {num_tokens} >= 1 init token ids, got {len(init_ids)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout in the activations the prefix starts from
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([init_ids], device=device), use_cache=True)
    finally:
        model.train(was_training)
    cache = _self_attention_cache(out.past_key_values)
    if cache is None or not getattr(cache, "layers", None):
        raise ValueError(f"{type(model).__name__} returned no key/value cache; prefix tuning needs one")
    keys = [layer.keys[0] for layer in cache.layers]  # [kv_heads, num_tokens, head_dim] per layer
    values = [layer.values[0] for layer in cache.layers]
    if freeze_base:
        for p in model.parameters():
            p.requires_grad_(False)
    wrapped = PrefixLM(model, keys, values, init_ids)
    return wrapped, ParamSpace(wrapped.prefix_parameters(), module=wrapped, small=True, **space_kwargs)
