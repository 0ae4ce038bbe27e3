"""A local Ray cluster whose worker slots stand in for machines: the cluster tests' and the
cluster benchmark's (one custom resource ``ai-stack:NAME`` per slot, in this process)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def local_ray(slots: Sequence[str]) -> Iterator[str]:
    """A new local Ray cluster — never one `ray start` runs on this machine — with a worker
    slot per name; its address, for drivers in other processes."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        resources={f"ai-stack:{slot}": 1 for slot in slots},
        namespace="ai-stack",
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
