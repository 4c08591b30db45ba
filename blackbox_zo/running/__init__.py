"""The runners: the Trainer loop, `run` (one config to one run folder), artifacts (eval, export, replay) and the CLI.

The top layer: it builds runs from `setup/` and drives a face from `faces/` or `distributed/`."""
