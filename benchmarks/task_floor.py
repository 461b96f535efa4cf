"""Every built-in task's reference solution: a raw host Jupyter kernel (the floor) vs a fresh sandbox.

Same code, same agent copy of the data, measured in one run so the ratios hold on a
noisy shared machine. The raw kernel sees the data where the sandbox does by
rewriting `/data/` and `/workspace` in the code to host folders.

Targets (issue 13): total <= 1.15x, no task above 1.5x.

Usage: python benchmarks/task_floor.py [--backend bwrap|docker] [--task ID ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

from cellprompt.sandbox import open_sandbox
from cellprompt.tasks import load_task, materialise
from cellprompt.tasks.loader import builtin_tasks


def _raw(cells: list[str], data_dir: Path) -> float:
    """Kernel start to last cell done, in a plain host kernel."""
    work = Path(tempfile.mkdtemp(prefix="floor-"))
    t0 = time.perf_counter()
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
        return time.perf_counter() - t0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _sandboxed(cells: list[str], mount: object, backend: str) -> float:
    """Sandbox launch to last cell done, in a fresh sandbox."""
    t0 = time.perf_counter()
    with open_sandbox(backend, datasets=[mount], wait_kernel=True) as sb:  # type: ignore[list-item]
        for cell in cells:
            r = sb.execute(cell, timeout=900)
            if r.final_status != "ok":
                raise RuntimeError(f"sandbox: {r.text()[-300:]}")
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", default="bwrap")
    p.add_argument("--task", action="append", help="task id (default: every built-in task)")
    args = p.parse_args()
    total_raw = total_box = 0.0
    worst = 0.0
    print(f"{'task':42s} {'raw s':>7s} {'sandbox s':>10s} {'ratio':>6s}")
    for task in [load_task(t) for t in args.task] if args.task else builtin_tasks():
        task_id = task.id
        if task.reference is None:
            continue
        mat = materialise(task)
        data_dir = Path(tempfile.mkdtemp(prefix="floor-data-"))
        (data_dir / mat.mount_name).symlink_to(mat.agent_dataset.resolve())
        raw = _raw(task.reference.cells, data_dir)
        box = _sandboxed(task.reference.cells, mat.mount(), args.backend)
        total_raw, total_box, worst = total_raw + raw, total_box + box, max(worst, box / raw)
        print(f"{task_id:42s} {raw:7.1f} {box:10.1f} {box / raw:6.2f}")
    if total_raw:
        print(f"{'all':42s} {total_raw:7.1f} {total_box:10.1f} {total_box / total_raw:6.2f}"
              f"   (targets: total <= 1.15, worst task <= 1.5; worst here {worst:.2f})")


if __name__ == "__main__":
    main()
