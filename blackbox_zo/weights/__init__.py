"""Parameter spaces and the tensors they tune: the Backend protocol, seeded noise, ParamSpace, low-rank,
LoRA / prefix / steering / subspace spaces, and the batched population. Nothing here imports a language model."""

from blackbox_zo._moved import moved_name


def __getattr__(name):  # VLLMBackend and CoverageError moved to blackbox_zo.vllm (0.3)
    return moved_name(__name__, name)
