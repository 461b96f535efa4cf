"""`python_check`: assertions over the agent's outputs and the withheld truth.

The check runs in a fresh sandbox of its own, never in the agent's: the truth must not
become visible to agent code, and the agent must not be able to tamper with the checker.
Inside that sandbox the check itself runs in an isolated interpreter (`python -I`: no
PYTHONPATH, no user site, not even the script's folder on `sys.path`) whose working
directory holds only the files the config declares (`files:`), copied from the host
without following any symlink. So an agent file named `scipy/stats.py` or `json.py` can
shadow nothing, and a symlink to a host file is never read. Truth, answer and the check
script live in another folder; the check sees `truth` and `answer` already loaded and
passes when it runs to the end. A last stdout line holding a JSON object becomes the
result's metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from cellprompt.grading.answer_files import UnsafePath, read_workspace_file
from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register

GRADER_DIR = ".grader"  # truth, answer and the script: never the check's working directory
FILES_DIR = "files"  # the check's working directory: the declared files only
MAX_COPY_BYTES = 50 * 1024 * 1024

PRELUDE = (f"import json as _json\n"
           f"truth = _json.load(open('/workspace/{GRADER_DIR}/truth.json'))\n"
           f"answer = _json.load(open('/workspace/{GRADER_DIR}/answer.json'))\n")

DRIVER = """
import json, os, subprocess, sys
os.makedirs("/workspace/{files}", exist_ok=True)
try:
    r = subprocess.run([sys.executable, "-I", "/workspace/{grader}/check.py"],
                       cwd="/workspace/{files}", capture_output=True, text=True, timeout={timeout},
                       env={{"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
                            "MPLCONFIGDIR": "/tmp/matplotlib"}})
    out = {{"rc": r.returncode, "stdout": r.stdout[-20000:], "stderr": r.stderr[-4000:]}}
except subprocess.TimeoutExpired:
    out = {{"rc": -1, "stdout": "", "stderr": "TimeoutError: the check ran past {timeout} s"}}
print(json.dumps(out))
"""


class CheckConfig(GraderConfig):
    code: str = Field(min_length=1)
    files: list[str] = Field(default_factory=list)  # workspace files the check may read
    timeout: float = Field(default=120.0, gt=0)
    mount_dataset: bool = False  # mount the agent's dataset copy at /data as well
    truth_requires: dict[str, list[str]] = Field(default_factory=dict)


def _declared_files(workspace: Path | None, names: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """The declared files that exist as regular files (read with no symlink followed)."""
    found: dict[str, bytes] = {}
    notes: list[str] = []
    if workspace is None:
        return found, notes
    total = 0
    for name in names:
        try:
            data = read_workspace_file(workspace, name, MAX_COPY_BYTES)
        except UnsafePath as exc:
            notes.append(str(exc))
            continue
        total += len(data)
        if total > MAX_COPY_BYTES:
            notes.append(f"{name}: skipped, the declared files exceed {MAX_COPY_BYTES} bytes")
            break
        found[name] = data
    return found, notes


def _last_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


@register
class PythonCheck(Grader[CheckConfig]):
    type = "python_check"
    Config = CheckConfig

    def truth_requirements(self) -> dict[str, list[str]]:
        return self.config.truth_requires

    def grade(self, answer: dict[str, Any] | None, ctx: GradeContext) -> GradeResult:
        from cellprompt.sandbox import open_sandbox

        datasets = list(ctx.datasets) if self.config.mount_dataset else []
        workspace = Path(ctx.workspace) if ctx.workspace is not None else None
        files, notes = _declared_files(workspace, self.config.files)
        driver = DRIVER.format(files=FILES_DIR, grader=GRADER_DIR,
                               timeout=repr(float(self.config.timeout)))
        with open_sandbox(backend=ctx.backend, datasets=datasets) as sb:
            for name, data in files.items():
                sb.write_file(f"{FILES_DIR}/{name}", data)
            sb.write_file(f"{GRADER_DIR}/truth.json", json.dumps(ctx.truth or {}).encode())
            sb.write_file(f"{GRADER_DIR}/answer.json", json.dumps(answer).encode())
            sb.write_file(f"{GRADER_DIR}/check.py", (PRELUDE + self.config.code).encode())
            result = sb.execute(driver, timeout=self.config.timeout + 30)
        text = result.text().strip()
        try:
            run = json.loads(text.splitlines()[-1]) if result.final_status == "ok" and text else None
        except json.JSONDecodeError:
            run = None
        metrics: dict[str, Any] = {"status": result.final_status}
        if not isinstance(run, dict):
            reason = f"check did not run: {result.final_status} {result.message or text[-300:]}"
            return GradeResult(score=0.0, passed=False, field_scores={"check": 0.0},
                               metrics=metrics, reasoning=reason.strip())
        ok = run.get("rc") == 0
        stdout = str(run.get("stdout", "")).strip()
        last = stdout.splitlines()[-1] if stdout else ""
        if ok and last.startswith("{"):
            try:
                parsed = json.loads(last)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                metrics.update(parsed)
        reason = "all checks passed" if ok else (_last_error_line(str(run.get("stderr", "")))
                                                  or f"check exited {run.get('rc')}")
        if notes:
            reason += "; " + "; ".join(notes)
        return GradeResult(score=1.0 if ok else 0.0, passed=ok, field_scores={"check": float(ok)},
                           metrics=metrics, reasoning=reason)
