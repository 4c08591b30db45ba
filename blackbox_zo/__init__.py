"""blackbox_zo: tune model weights against objectives you cannot differentiate, with the memory of inference.

Seeded perturbations (MeZO, ZO-Bench, EGGROLL): directions are regenerated from seeds, never stored.
Folders: `weights/` (the Backend protocol, ParamSpace, noise, low-rank, spaces), `step/` (spec, estimators,
transforms, engine, trajectory), `lm/` (language-model calls), `faces/` (MeZO, AskTell, CMA), `vllm/`, `setup/`
(config, the objective contract, compatibility, assembly), `distributed/` (Ray), `prefer/` (the preference page),
`running/` (trainer, run, CLI).
"""

from blackbox_zo._lazy import lazy_exports

_HOMES = {  # module (under blackbox_zo.) -> the names it exports here
    "faces.ask_tell": ("AskTell", "Candidate"),
    "faces.cma": ("CMA",),
    "faces.mezo": ("MeZO",),
    "running.tuned": ("load_tuned",),
    "step.engine": ("Engine", "NonFiniteObjective", "ObjectiveError", "StepResult"),
    "step.estimators": ("SPSA", "OneSidedSPSA", "Pairwise", "Population", "make_estimator"),
    "step.spec": ("Schedule", "Spec"),
    "step.trajectory": ("Trajectory", "TrajectoryError"),
    "step.transforms": ("chain", "make_optimizer"),
    "weights.backend": ("Backend",),
    "weights.noise": ("add_noise_", "derive_seed", "noise_slice"),
    "weights.params": ("ParamSpace", "fingerprint_tensors"),
    "weights.precision": ("check_precision",),
    "weights.spaces": ("lora_space", "prefix_space"),
    "weights.steering": ("steering_space",),
    "weights.subspace": ("Subspace", "subspace"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _HOMES)  # each is imported on first use
__version__ = "0.3.0"  # the only place the version is written (pyproject.toml reads it; CHANGELOG.md)

