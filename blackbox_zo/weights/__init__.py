"""Backends that hold the tuned tensors outside this process's torch module (vLLM workers).

Importing this package does not import vLLM; `VLLMBackend` is loaded on first access.
"""

__all__ = ["VLLMBackend", "CoverageError"]


def __getattr__(name):
    if name in __all__:
        from blackbox_zo.weights import vllm_backend

        return getattr(vllm_backend, name)
    raise AttributeError(name)
