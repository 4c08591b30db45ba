"""Language models for blackbox_zo: load one from local files and score or sample from it with forward calls only.

`load_model` gives a Hugging Face model + tokenizer (the embedded SmolLM2-135M by default); `TransformersLM`
wraps them with the batched log-likelihood, label-word and generation calls that objectives need; `LM` is
the protocol those calls form (VLLMBackend satisfies it too), `UntunedLM` reads a steered or LoRA-tuned model
as it was before tuning, and `tokens` holds the tokenisation both share.
"""

from blackbox_zo.lm.embedded import embedded_model_dir
from blackbox_zo.lm.loading import load_model
from blackbox_zo.lm.protocol import LM
from blackbox_zo.lm.transformers_lm import TransformersLM
from blackbox_zo.lm.untuned import UntunedLM

__all__ = ["embedded_model_dir", "load_model", "LM", "TransformersLM", "UntunedLM"]
