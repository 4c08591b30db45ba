"""blackbox_zo: tune model weights against objectives you cannot differentiate, with the memory of inference.

Seeded in-place perturbations (MeZO, ZO-Bench): directions are regenerated from seeds, never stored.
"""

from .ask_tell import AskTell, Candidate
from .backend import Backend
from .engine import Engine, NonFiniteObjective, ObjectiveError, StepResult
from .estimators import SPSA, OneSidedSPSA, Pairwise, Population, make_estimator
from .mezo import MeZO
from .noise import add_noise_, derive_seed, noise_slice
from .optim import chain, make_optimizer
from .params import ParamSpace, fingerprint_tensors
from .precision import check_precision
from .spaces import lora_space, prefix_space
from .spec import Schedule, Spec
from .steering import steering_space
from .trajectory import Trajectory, TrajectoryError

__all__ = [
    "AskTell", "Backend", "Candidate", "Engine", "MeZO", "NonFiniteObjective", "ObjectiveError", "OneSidedSPSA",
    "Pairwise", "ParamSpace", "Population", "SPSA", "StepResult", "Trajectory", "TrajectoryError", "add_noise_",
    "check_precision", "derive_seed", "fingerprint_tensors", "lora_space", "prefix_space", "steering_space", "make_estimator",
    "make_optimizer", "chain", "noise_slice", "Schedule", "Spec",
]
__version__ = "0.1.0"
