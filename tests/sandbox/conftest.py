"""Sandboxes shared per module and backend: starting one costs about a second."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cellprompt.sandbox import HttpSandbox, open_sandbox
from tests.conftest import require_sandbox_backend


def open_for(backend: str, **kwargs: object) -> HttpSandbox:
    require_sandbox_backend(backend)
    return open_sandbox(backend, unsafe=backend == "local", wait_kernel=True, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def module_sandbox(request: pytest.FixtureRequest) -> Iterator[HttpSandbox]:
    """One sandbox per (module, backend); tests that break it leave it restarted."""
    with open_for(request.param, memory="2g", cpus=2.0) as sb:
        yield sb
