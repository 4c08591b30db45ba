"""blackbox_zo: tune model weights against objectives you cannot differentiate, with the memory of inference.

Seeded perturbations (MeZO, ZO-Bench, EGGROLL): directions are regenerated from seeds, never stored.
Folders: `step/` (spec, estimators, transforms, engine, trajectory), `weights/` (the Backend protocol,
ParamSpace, noise, low-rank, spaces, vLLM), `faces/` (MeZO, AskTell), `running/` (config, trainer, run, CLI),
`lm/` (language-model calls), `distributed/` (Ray), `prefer/` (the preference page).
"""

from blackbox_zo import _moved
from blackbox_zo.faces.ask_tell import AskTell, Candidate
from blackbox_zo.faces.cma import CMA
from blackbox_zo.faces.mezo import MeZO
from blackbox_zo.step.engine import Engine, NonFiniteObjective, ObjectiveError, StepResult
from blackbox_zo.step.estimators import SPSA, OneSidedSPSA, Pairwise, Population, make_estimator
from blackbox_zo.step.spec import Schedule, Spec
from blackbox_zo.step.trajectory import Trajectory, TrajectoryError
from blackbox_zo.step.transforms import chain, make_optimizer
from blackbox_zo.weights.backend import Backend
from blackbox_zo.weights.noise import add_noise_, derive_seed, noise_slice
from blackbox_zo.weights.params import ParamSpace, fingerprint_tensors
from blackbox_zo.weights.precision import check_precision
from blackbox_zo.weights.spaces import lora_space, prefix_space
from blackbox_zo.weights.steering import steering_space
from blackbox_zo.weights.subspace import Subspace, subspace

__all__ = [
    "AskTell", "Backend", "CMA", "Candidate", "Subspace", "subspace", "Engine", "MeZO", "NonFiniteObjective",
    "ObjectiveError", "OneSidedSPSA",
    "Pairwise", "ParamSpace", "Population", "SPSA", "StepResult", "Trajectory", "TrajectoryError", "add_noise_",
    "check_precision", "derive_seed", "fingerprint_tensors", "lora_space", "prefix_space", "steering_space", "make_estimator",
    "make_optimizer", "chain", "noise_slice", "Schedule", "Spec",
]
__version__ = "0.2.0"
_moved.install()  # old import paths (blackbox_zo.trainer, ...) resolve to the moved modules
