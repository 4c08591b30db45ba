"""The optimizer core, free of torch modules: Spec, estimators, Optax-style transforms, the engine and the trajectory.

Everything here works on (seed, coefficient) pairs; tensors are touched only through the Backend protocol."""
