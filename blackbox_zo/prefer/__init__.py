"""Preference tuning with people: a local web page where annotators pick the better of two completions.

Each vote is stored in SQLite; when a step's pairs are all voted, the pairwise estimator takes the step.
"""

from .config import PreferConfig, load_prefer_config
from .export import export_votes
from .session import PreferSession
from .store import VoteRejected, VoteStore

__all__ = ["PreferConfig", "PreferSession", "VoteRejected", "VoteStore", "export_votes", "load_prefer_config"]
