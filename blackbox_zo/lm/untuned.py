"""The untuned model read through the tuned one: steering vectors skipped or the LoRA adapter disabled, no copy.

Why: a fluency reference (`objectives.FluencyGuard`) needs the model as it was before tuning. For the small
spaces that is the same weights with the space switched off, so it costs no second copy of the model.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from blackbox_zo.lm.transformers_lm import TransformersLM
from blackbox_zo.weights.params import ParamSpace
from blackbox_zo.weights.population import suspended
from blackbox_zo.weights.steering import STEER, steering_off


def switch_of(name: str, model) -> str | None:
    """How tensor `name` is switched off: 'steering' (a steering_space vector), 'adapter' (a peft LoRA factor)."""
    if name.rsplit(".", 1)[-1] == STEER:
        return "steering"
    if "lora_" in name and hasattr(model, "disable_adapter"):
        return "adapter"
    return None


class UntunedLM:
    """The LM calls of `lm` as its model computed before `space` was tuned: each call runs with the steering
    vectors skipped (steering_space) or the peft adapter disabled (lora_space), and outside any population.

    Only spaces that can be switched off qualify; a space over the weights themselves raises ValueError (load
    the model a second time for those).
    """

    def __init__(self, lm: TransformersLM, space: ParamSpace) -> None:
        switches = {name: switch_of(name, lm.model) for name in space.tensors}
        fixed = [name for name, how in switches.items() if how is None]
        if fixed:
            raise ValueError(f"UntunedLM cannot switch off tensor {fixed[0]!r} ({len(fixed)} of {len(switches)} in the "
                             "space): only steering vectors and peft LoRA factors can be; load the model a second time")
        self.lm, self.switches = lm, set(switches.values())

    @contextlib.contextmanager
    def switched_off(self) -> Iterator[None]:
        """The block computes with the untuned model: no population, no steering, no adapter."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(suspended())
            stack.enter_context(steering_off())
            if "adapter" in self.switches:
                stack.enter_context(self.lm.model.disable_adapter())
            yield


def _read_untuned(name: str):
    def call(self: UntunedLM, *args, **kwargs):
        with self.switched_off():
            return getattr(self.lm, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"TransformersLM.{name}, read as the untuned model."
    return call


for _name in ("loglik", "choice_logliks", "label_word_logits", "prompt_text", "generate", "answer_logprobs"):  # the LM protocol
    setattr(UntunedLM, _name, _read_untuned(_name))
