"""Old path of `blackbox_zo.weights.precision` (see blackbox_zo/_moved.py): importing it warns and gives that module's names."""

from blackbox_zo._moved import reexport

__getattr__, __dir__ = reexport(__name__)
