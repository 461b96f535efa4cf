"""A real local Ray cluster for the session, on loopback, with no dashboard and no usage stats.

Loaded as a plugin by `tests/conftest.py`; started only when a test asks for `ray_cluster`.
Two CPUs, as on CI; tests give each trial one CPU so two trials share the node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The cluster's GCS address, for drivers in other processes (`--ray-address`)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for 127.0.0.1 only
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'cellprompt[ray]'")
    ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, namespace="cellprompt")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def one_cpu_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials ask for one CPU, so the two-CPU cluster runs two at once."""
    from cellprompt.config import reset_settings

    monkeypatch.setenv("CELLPROMPT_SANDBOX_CPUS", "1")
    reset_settings()
