"""The setup layer: config reading, task and model assembly, batches and objective calls.

It sits below the runners: `running/`, `distributed/` and `prefer/` all build their runs from it."""
