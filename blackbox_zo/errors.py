"""The error an objective raises, in one torch-free module: the engine, the CLI and `objectives/` share the class.

A scorer that returns something unusable and an objective that fails at a perturbed point are the same kind
of user error (exit 2 from the CLI), so they are one class, importable without loading the engine.
"""


class ObjectiveError(RuntimeError, ValueError):
    """An objective failed or returned something unusable; the message names the objective, the step or the index."""
