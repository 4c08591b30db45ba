"""The vLLM backend: weights tuned in place inside vLLM's workers, the same noise as the in-process tensors.

Importing this package does not import vLLM; `VLLMBackend` is loaded on first access.
"""

from blackbox_zo._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"backend": ("VLLMBackend", "CoverageError")})
