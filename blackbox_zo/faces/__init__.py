"""The optimizer faces a user or the Trainer drives: MeZO (step with a closure), AskTell, CMA.

Each implements the Face protocol (faces/protocol.py: step, attach, replay, report) over a space from `weights/`."""
