"""Batches on a Ray cluster: each node keeps its own models resident (docs/cluster.md).

- :mod:`~ai_stack.cluster.placement`: which node is each model's home;
- :mod:`~ai_stack.cluster.worker`: a node's worker, its own session making the calls;
- :mod:`~ai_stack.cluster.driver`: Ray, the workers, and the scheduler handing calls to them.

Ray is the optional ``cluster`` extra: nothing imports it until a batch asks for a cluster.
"""

from ai_stack.cluster.driver import Cluster, ClusterBatchRunner
from ai_stack.cluster.placement import NodeOffer, Placement

__all__ = ["Cluster", "ClusterBatchRunner", "NodeOffer", "Placement"]
