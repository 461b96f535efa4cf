"""The warm pool: ready sandboxes at once, never reused, refilled, and closed cleanly."""

from __future__ import annotations

import pytest

from cellprompt.errors import SandboxError
from cellprompt.sandbox import SandboxPool, state
from tests.conftest import require_sandbox_backend


def test_pool_hands_out_fresh_ready_sandboxes_and_refills() -> None:
    require_sandbox_backend("bwrap")
    pool = SandboxPool(2, backend="bwrap", memory="1g")
    try:
        with pool.acquire() as first:
            assert first.status()["kernel"] == "ready"
            first.execute("leftover = 'from trial 1'")
        second = pool.acquire()
        assert second.id != first.id
        r = second.execute("'leftover' in globals()")
        assert r.outputs[0]["data"]["text/plain"] == "False"
        third = pool.acquire()  # the pool refills behind the scenes
        assert len({first.id, second.id, third.id}) == 3
        assert not state.sandbox_dir(first.id).exists()
    finally:
        pool.close()
    # handed-out sandboxes outlive the pool and its refill thread
    assert second.execute("1 + 1").outputs[0]["data"]["text/plain"] == "2"
    second.close()
    third.close()
    with pytest.raises(SandboxError, match="closed"):
        pool.acquire()


def test_pool_reports_why_it_cannot_start() -> None:
    with SandboxPool(1, backend="local") as pool, pytest.raises(SandboxError, match="unsafe"):
        pool.acquire(timeout=60)
