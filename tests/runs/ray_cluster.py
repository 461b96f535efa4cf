"""A real local Ray cluster for the session, on loopback, with no dashboard and no usage stats.

Loaded as a plugin by `tests/conftest.py`; started only when a test asks for `ray_cluster`.
Two CPUs, as on CI; tests give each trial one CPU so two trials share the node. One test
adds a second node on the same machine for its duration (`second_node`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[Any]:
    """The session's `ray.cluster_utils.Cluster`: its head node, with this process as the driver.

    Built with Ray's own multi-node test cluster rather than `ray.init`, so a test can add a
    second node (`second_node`): `ray start` cannot join a head that listens on loopback
    only (Ray 2.x rewrites a 127.0.0.1 address into the machine's outward IP).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for 127.0.0.1 only
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'cellprompt[ray]'")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 200 << 20, "include_dashboard": False})
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING,
                 namespace="cellprompt")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(local_cluster: Any) -> str:
    """The cluster's GCS address, for drivers in other processes (`--ray-address`)."""
    return str(local_cluster.address)


@pytest.fixture
def second_node(local_cluster: Any) -> Iterator[str]:
    """A second node of the cluster on this machine (2 CPUs, loopback), for one test; its id."""
    node = local_cluster.add_node(num_cpus=2, object_store_memory=100 << 20)
    try:
        yield node.node_id
    finally:
        local_cluster.remove_node(node)


@pytest.fixture
def one_cpu_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials ask for one CPU, so the two-CPU cluster runs two at once."""
    from cellprompt.config import reset_settings

    monkeypatch.setenv("CELLPROMPT_SANDBOX_CPUS", "1")
    reset_settings()
