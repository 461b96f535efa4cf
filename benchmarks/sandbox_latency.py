"""Sandbox latency against a bare Jupyter kernel, measured in one run on this machine.

Prints four figures with issue 13's targets in brackets:
  round trip: median `1+1` through the sandbox's HTTP API / through a raw jupyter_client kernel [<= 1.2]
  same kernel settings: the same, against a raw kernel given the sandbox kernel's settings
              (`KERNEL_SETTINGS`: no history file, no 0.5 ms sleep per reply), so the ratio is
              the HTTP hop and the service alone                                          [<= 1.2]
  cold start: sandbox launch to first result / raw kernel start to first result               [<= 1.4]
  warm pool : median SandboxPool.acquire()                                                     [<= 50 ms]

Both sides are interleaved, so load from other processes hits them alike. On a loaded
machine wall-clock ratios still say more about the scheduler than about the sandbox, so
the CPU seconds both sides spent (every process involved: client, service, kernel,
bwrap) are printed too: that ratio is the sandbox's own cost and barely moves with load.
CPU is counted for the process backends (bwrap, local); docker shows wall clock only.

Usage: python benchmarks/sandbox_latency.py [--backend bwrap|docker|local] [--n 200]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import psutil
from jupyter_client.manager import KernelManager

from cellprompt.sandbox import HttpSandbox, SandboxPool, open_sandbox
from cellprompt.sandbox.service.kernel_launcher import KERNEL_SETTINGS

TARGETS = {"round trip": 1.2, "same settings": 1.2, "cold start": 1.4, "acquire_ms": 50.0}


def _raw_run(kc: Any, code: str) -> None:
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    kc.get_shell_msg(timeout=30)


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of `pid` and everything below it (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def own_cpu() -> float:
    """CPU seconds of this process (all its threads: the zmq and httpx ones too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def kernel_pid(km: KernelManager) -> int:
    """The raw kernel's process id (jupyter_client's local provisioner holds the Popen)."""
    return int(km.provisioner.process.pid)  # type: ignore[union-attr]


def sandbox_pid(sb: HttpSandbox) -> int | None:
    record = getattr(sb.launched, "record", None)
    return None if getattr(sb.launched, "_proc", None) is None else getattr(record, "pid", None)


def raw_start(settings: tuple[str, ...] = ()) -> tuple[float, float, KernelManager, object]:
    """Wall and CPU seconds from starting a plain local ipykernel to its first `1+1` result."""
    cpu0, started = own_cpu(), time.perf_counter()
    km = KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=list(settings))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    _raw_run(kc, "1+1")
    wall = time.perf_counter() - started
    return wall, own_cpu() - cpu0 + tree_cpu(kernel_pid(km)), km, kc


def sandbox_start(backend: str) -> tuple[float, float, HttpSandbox]:
    cpu0, started = own_cpu(), time.perf_counter()
    sb = open_sandbox(backend, unsafe=backend == "local")
    first = sb.execute("1+1")
    wall = time.perf_counter() - started
    assert first.final_status == "ok", first.text()
    return wall, own_cpu() - cpu0 + tree_cpu(sandbox_pid(sb)), sb


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


def _line(name: str, box: float, raw: float, unit: str, box_cpu: float, raw_cpu: float) -> str:
    scale, fmt = (1e3, ".2f") if unit == "ms" else (1.0, ".3f")
    cpu = (f"; CPU {box_cpu * scale:{fmt}} / {raw_cpu * scale:{fmt}} {unit} = "
           f"{box_cpu / raw_cpu:.2f}" if box_cpu and raw_cpu else "")
    return (f"{name + ':':15s} sandbox {box * scale:{fmt}} {unit} / raw kernel {raw * scale:{fmt}} "
            f"{unit} = {box / raw:.2f}  (target <= {TARGETS[name]}){cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--n", type=int, default=200, help="round trips per side")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per side")
    parser.add_argument("--pool-rounds", type=int, default=5)
    args = parser.parse_args()

    raw_colds: list[float] = []
    sb_colds: list[float] = []
    raw_cold_cpu: list[float] = []
    sb_cold_cpu: list[float] = []
    trips: dict[str, list[float]] = {"raw": [], "same settings": [], "sandbox": []}
    trip_cpu = dict.fromkeys(trips, 0.0)  # the client's share per trip, the far side's per loop
    counted = True  # CPU of the sandbox side is visible (a process backend)
    for _ in range(args.starts):
        wall, used, km, kc = raw_start()
        raw_colds.append(wall)
        raw_cold_cpu.append(used)
        _, _, tuned_km, tuned_kc = raw_start(KERNEL_SETTINGS)
        wall, used, sb = sandbox_start(args.backend)
        sb_colds.append(wall)
        sb_cold_cpu.append(used)
        sb_pid = sandbox_pid(sb)
        counted = counted and sb_pid is not None
        sides: dict[str, tuple[Callable[[], object], int | None]] = {
            "raw": (lambda kc=kc: _raw_run(kc, "1+1"), kernel_pid(km)),
            "same settings": (lambda kc=tuned_kc: _raw_run(kc, "1+1"), kernel_pid(tuned_km)),
            "sandbox": (lambda sb=sb: sb.execute("1+1"), sb_pid)}
        far = {name: tree_cpu(pid) for name, (_, pid) in sides.items()}
        for _ in range(args.n // args.starts):
            for name, (run, _) in sides.items():
                c0, t = own_cpu(), time.perf_counter()
                run()
                trips[name].append(time.perf_counter() - t)
                trip_cpu[name] += own_cpu() - c0
        for name, (_, pid) in sides.items():
            trip_cpu[name] += tree_cpu(pid) - far[name]
        sb.close()
        for client, manager in ((kc, km), (tuned_kc, tuned_km)):
            client.stop_channels()  # type: ignore[attr-defined]
            manager.shutdown_kernel(now=True)
    acquire = pool_acquire(args.backend, args.pool_rounds)

    median = statistics.median
    n = len(trips["raw"])
    box_cpu = trip_cpu["sandbox"] / n if counted else 0.0
    print(f"backend: {args.backend}  (load average {psutil.getloadavg()[0]:.1f} on "
          f"{psutil.cpu_count()} CPUs)")
    for against in ("raw", "same settings"):
        print(_line("round trip" if against == "raw" else "same settings",
                    median(trips["sandbox"]), median(trips[against]), "ms", box_cpu,
                    trip_cpu[against] / n))
    print(_line("cold start", median(sb_colds), median(raw_colds), "s",
                median(sb_cold_cpu) if counted else 0.0, median(raw_cold_cpu)))
    print(f"warm pool acquire: median {median(acquire) * 1e3:.2f} ms  "
          f"(target <= {TARGETS['acquire_ms']:g} ms)")


if __name__ == "__main__":
    main()
