"""Preference tuning with people: a local web page where annotators pick the better of two completions.

Each vote is stored in SQLite; when a step's pairs are all voted, the pairwise estimator takes the step.
"""

from blackbox_zo.prefer.config import PreferConfig, load_prefer_config
from blackbox_zo.prefer.export import export_votes
from blackbox_zo.prefer.session import PreferSession
from blackbox_zo.prefer.store import VoteRejected, VoteStore

__all__ = ["PreferConfig", "PreferSession", "VoteRejected", "VoteStore", "export_votes", "load_prefer_config"]
