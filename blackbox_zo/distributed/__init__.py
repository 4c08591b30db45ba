"""Scale out on Ray: a step's evaluation points (or batch shards) run on N workers; only seeds and scalars travel.

Every worker holds its own copy of the weights and of the optimizer state and applies the same update
from the same values, so all copies stay bitwise equal; a lost worker is rebuilt from base + trajectory.
`DistributedMeZO` is the optimizer face the Trainer drives (`run` builds it when distributed.workers is set).
"""

from blackbox_zo.distributed.driver import DistributedMeZO

__all__ = ["DistributedMeZO"]
