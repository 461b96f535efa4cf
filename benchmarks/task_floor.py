"""Every built-in task's reference solution: a raw host Jupyter kernel (the floor) vs a fresh sandbox.

Same code, same agent copy of the data, measured in one run so the ratios hold on a
noisy shared machine. The raw kernel sees the data where the sandbox does by
rewriting `/data/` and `/workspace` in the code to host folders.

Targets (issue 13): total <= 1.15x, no task above 1.5x.

CPU seconds of both sides (every process: client, service, kernel and what they fork)
are printed too: on a loaded machine the wall-clock ratio says as much about the
scheduler as about the sandbox, the CPU ratio is the sandbox's own cost.

Usage: python benchmarks/task_floor.py [--backend bwrap|docker] [--task ID ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager
from sandbox_latency import kernel_pid, own_cpu, sandbox_pid, tree_cpu

from cellprompt.sandbox import open_sandbox
from cellprompt.sandbox.base import Mount
from cellprompt.tasks import load_task, materialise
from cellprompt.tasks.loader import builtin_tasks


def _raw(cells: list[str], data_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds from kernel start to last cell done, in a plain host kernel."""
    work = Path(tempfile.mkdtemp(prefix="floor-"))
    c0, t0 = own_cpu(), time.perf_counter()
    km = KernelManager()
    km.start_kernel(cwd=str(work))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    try:
        for cell in cells:
            code = cell.replace("/data/", f"{data_dir}/").replace("/workspace", str(work))
            reply = kc.execute_interactive(code, timeout=900, output_hook=lambda _m: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"raw kernel: {reply['content'].get('evalue')}")
        wall = time.perf_counter() - t0
        return wall, own_cpu() - c0 + tree_cpu(kernel_pid(km))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _sandboxed(cells: list[str], mount: Mount, backend: str) -> tuple[float, float]:
    """Wall and CPU seconds from sandbox launch to last cell done, in a fresh sandbox (CPU 0
    when the sandbox's processes are not the host's to count: docker)."""
    c0, t0 = own_cpu(), time.perf_counter()
    with open_sandbox(backend, datasets=[mount], wait_kernel=True) as sb:
        for cell in cells:
            r = sb.execute(cell, timeout=900)
            if r.final_status != "ok":
                raise RuntimeError(f"sandbox: {r.text()[-300:]}")
        wall = time.perf_counter() - t0
        pid = sandbox_pid(sb)
        return wall, (own_cpu() - c0 + tree_cpu(pid)) if pid is not None else 0.0


def _cpu(box: float, raw: float) -> str:
    """The sandbox's CPU seconds and ratio, or n/a where they are not counted."""
    return f"{box:13.1f} {box / raw:6.2f}" if box else f"{'n/a':>13s} {'n/a':>6s}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", default="bwrap")
    p.add_argument("--task", action="append", help="task id (default: every built-in task)")
    args = p.parse_args()
    total = {"raw": 0.0, "box": 0.0, "raw cpu": 0.0, "box cpu": 0.0}
    worst = 0.0
    print(f"{'task':36s} {'raw s':>7s} {'sandbox s':>10s} {'ratio':>6s}   "
          f"{'raw CPU s':>9s} {'sandbox CPU s':>13s} {'ratio':>6s}")
    for task in [load_task(t) for t in args.task] if args.task else builtin_tasks():
        if task.reference is None:
            continue
        mat = materialise(task)
        data_dir = Path(tempfile.mkdtemp(prefix="floor-data-"))
        (data_dir / mat.mount_name).symlink_to(mat.agent_dataset.resolve())
        raw, raw_cpu = _raw(task.reference.cells, data_dir)
        box, box_cpu = _sandboxed(task.reference.cells, mat.mount(), args.backend)
        for key, value in (("raw", raw), ("box", box), ("raw cpu", raw_cpu), ("box cpu", box_cpu)):
            total[key] += value
        worst = max(worst, box / raw)
        print(f"{task.id:36s} {raw:7.1f} {box:10.1f} {box / raw:6.2f}   {raw_cpu:9.1f} "
              f"{_cpu(box_cpu, raw_cpu)}")
    if total["raw"]:
        print(f"{'all':36s} {total['raw']:7.1f} {total['box']:10.1f} "
              f"{total['box'] / total['raw']:6.2f}   {total['raw cpu']:9.1f} "
              f"{_cpu(total['box cpu'], total['raw cpu'])}")
        print(f"targets (wall): total <= 1.15, worst task <= 1.5; worst here {worst:.2f}")


if __name__ == "__main__":
    main()
