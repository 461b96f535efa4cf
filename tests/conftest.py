"""Shared test set-up, kept minimal: helpers any test folder may use, no global side effects."""

from __future__ import annotations

import os

import pytest

from cellprompt.errors import SandboxError

pytest_plugins = ["tests.fakes.fixtures", "tests.runs.ray_cluster"]


def require_sandbox_backend(name: str) -> None:
    """Skip (saying what is missing) unless backend `name` can run here.

    With CELLPROMPT_REQUIRE_DOCKER=1 (CI with Docker) a missing docker backend fails
    the test instead, so a broken engine or image cannot pass as a skip.
    """
    from cellprompt.sandbox import get_backend

    try:
        get_backend(name, unsafe=True).check()
    except (SandboxError, ImportError) as exc:
        reason = f"sandbox backend {name} unavailable: {exc}"
        if name == "docker" and os.environ.get("CELLPROMPT_REQUIRE_DOCKER") == "1":
            pytest.fail(reason + " (CELLPROMPT_REQUIRE_DOCKER=1)")
        pytest.skip(reason)
