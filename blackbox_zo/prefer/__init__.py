"""Preference tuning with people: a local web page where annotators pick the better of two completions.

Each vote is stored in SQLite; when a step's pairs are all voted, the pairwise estimator takes the step.
"""

from blackbox_zo._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("PreferConfig", "load_prefer_config"),
    "export": ("export_votes",),
    "session": ("PreferSession",),
    "store": ("VoteRejected", "VoteStore"),
})
