"""Language models for blackbox_zo: load one from local files and score or sample from it with forward calls only.

`load_model` gives a Hugging Face model + tokenizer (the embedded SmolLM2-135M by default); `TransformersLM`
wraps them with the batched log-likelihood, label-word and generation calls that objectives need.
"""

from .embedded import embedded_model_dir
from .loading import load_model
from .transformers_lm import TransformersLM

__all__ = ["embedded_model_dir", "load_model", "TransformersLM"]
