"""The warm pool: ready sandboxes at once, never reused, refilled, and closed cleanly."""

from __future__ import annotations

import time

import pytest

from cellprompt.errors import SandboxError
from cellprompt.sandbox import SandboxPool, state
from cellprompt.sandbox.base import Mount
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


def test_planned_pool_prelaunches_in_order_and_starts_the_unforeseen_at_once(tmp_path) -> None:
    """The runner's use: sandboxes holding each upcoming trial's data, started ahead."""
    require_sandbox_backend("bwrap")
    data = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, folder in data.items():
        folder.mkdir()
        (folder / "id.txt").write_text(name)
    mounts = {name: [Mount(folder, name)] for name, folder in data.items()}
    plan = [{"backend": "bwrap", "datasets": mounts[n]} for n in ("a", "b")]
    with SandboxPool(2, plan=plan, memory="1g") as pool:
        deadline = time.monotonic() + 120
        while pool.ready() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.ready() == 2  # both foreseen sandboxes launched ahead
        for name in ("b", "c", "a"):  # out of order, and one the plan never named
            with pool("bwrap", mounts[name]) as sandbox:
                r = sandbox.execute(f"print(open('/data/{name}/id.txt').read())")
                assert r.text().strip() == name
        assert pool.ready() == 0
