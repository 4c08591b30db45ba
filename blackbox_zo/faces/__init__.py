"""The optimizer faces a user or the Trainer drives: MeZO (step with a closure), AskTell, CMA.

Each wraps the engine in `step/` around a parameter space from `weights/`."""
