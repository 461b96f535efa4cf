"""Sandbox latency against a bare Jupyter kernel, measured in one run on this machine.

Prints three figures (issue 2's targets in brackets):
  round trip: median `1+1` through the sandbox's HTTP API / through a raw jupyter_client kernel [<= 1.25]
  cold start: sandbox launch to first result / raw kernel start to first result               [<= 1.5]
  warm pool : median SandboxPool.acquire()                                                     [<= 50 ms]

Usage: python benchmarks/sandbox_latency.py [--backend bwrap|docker|local] [--n 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

from jupyter_client.manager import KernelManager

from cellprompt.sandbox import HttpSandbox, SandboxPool, open_sandbox


def _raw_run(kc, code: str) -> None:  # type: ignore[no-untyped-def]
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    kc.get_shell_msg(timeout=30)


def raw_start() -> tuple[float, KernelManager, object]:
    """Seconds from starting a plain local ipykernel to its first `1+1` result."""
    started = time.perf_counter()
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    _raw_run(kc, "1+1")
    return time.perf_counter() - started, km, kc


def sandbox_start(backend: str) -> tuple[float, HttpSandbox]:
    started = time.perf_counter()
    sb = open_sandbox(backend, unsafe=backend == "local")
    first = sb.execute("1+1")
    assert first.final_status == "ok", first.text()
    return time.perf_counter() - started, sb


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pool_acquire(backend: str, rounds: int) -> list[float]:
    times = []
    with SandboxPool(2, backend=backend, unsafe=backend == "local") as pool:
        for _ in range(rounds):
            deadline = time.monotonic() + 120
            while pool.ready() < pool.size and time.monotonic() < deadline:
                time.sleep(0.05)  # measure a full pool, as between trials of a run
            t = time.perf_counter()
            sb = pool.acquire()
            times.append(time.perf_counter() - t)
            sb.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--n", type=int, default=200, help="round trips per side")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per side")
    parser.add_argument("--pool-rounds", type=int, default=5)
    args = parser.parse_args()

    # interleaved, so that load from other processes hits both sides alike
    raw_colds, sb_colds, raw_trips, sb_trips = [], [], [], []
    for _ in range(args.starts):
        cold, km, kc = raw_start()
        raw_colds.append(cold)
        cold, sb = sandbox_start(args.backend)
        sb_colds.append(cold)
        for _ in range(args.n // args.starts):
            raw_trips.append(timed(partial(_raw_run, kc, "1+1")))
            sb_trips.append(timed(partial(sb.execute, "1+1")))
        sb.close()
        kc.stop_channels()  # type: ignore[attr-defined]
        km.shutdown_kernel(now=True)
    acquire = pool_acquire(args.backend, args.pool_rounds)

    raw_rt, sb_rt = statistics.median(raw_trips), statistics.median(sb_trips)
    raw_cold, sb_cold = statistics.median(raw_colds), statistics.median(sb_colds)
    print(f"backend: {args.backend}")
    print(f"round trip 1+1: sandbox {sb_rt * 1e3:.2f} ms / raw kernel {raw_rt * 1e3:.2f} ms "
          f"= {sb_rt / raw_rt:.2f}  (target <= 1.25)")
    print(f"cold start:     sandbox {sb_cold:.3f} s / raw kernel {raw_cold:.3f} s "
          f"= {sb_cold / raw_cold:.2f}  (target <= 1.5)")
    print(f"warm pool acquire: median {statistics.median(acquire) * 1e3:.2f} ms  "
          "(target <= 50 ms)")


if __name__ == "__main__":
    main()
