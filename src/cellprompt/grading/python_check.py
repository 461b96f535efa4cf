"""`python_check`: assertions over the agent's outputs and the withheld truth.

The check runs in a fresh sandbox of its own, never in the agent's: the truth
must not become visible to agent code, and the agent must not be able to tamper
with the checker. The agent's workspace files are copied in first, then
`__truth__.json` and `__answer__.json` (written last, so an agent file of the
same name cannot stand in for them). The check code sees `truth` and `answer`
already loaded; it passes when it runs to the end. A last stdout line holding a
JSON object becomes the result's metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from cellprompt.grading.base import GradeResult
from cellprompt.grading.registry import GradeContext, Grader, GraderConfig, register

PRELUDE = ("import json as _json\n"
           "truth = _json.load(open('__truth__.json'))\n"
           "answer = _json.load(open('__answer__.json'))\n")
MAX_COPY_BYTES = 50 * 1024 * 1024


class CheckConfig(GraderConfig):
    code: str = Field(min_length=1)
    files: list[str] | None = None  # workspace files to copy; default: all (up to 50 MB)
    timeout: float = Field(default=120.0, gt=0)
    mount_dataset: bool = False  # mount the agent's dataset copy at /data as well
    truth_requires: dict[str, list[str]] = Field(default_factory=dict)


def _workspace_files(workspace: Path | None, names: list[str] | None) -> list[Path]:
    if workspace is None or not workspace.is_dir():
        return []
    if names is not None:
        return [workspace / n for n in names if (workspace / n).is_file()]
    files, total = [], 0
    for f in sorted(p for p in workspace.rglob("*") if p.is_file() and not p.is_symlink()):
        total += f.stat().st_size
        if total > MAX_COPY_BYTES:
            break
        files.append(f)
    return files


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
        with open_sandbox(backend=ctx.backend, datasets=datasets) as sb:
            for f in _workspace_files(workspace, self.config.files):
                sb.write_file(f.relative_to(workspace).as_posix(), f.read_bytes())  # type: ignore[arg-type]
            sb.write_file("__truth__.json", json.dumps(ctx.truth or {}).encode())
            sb.write_file("__answer__.json", json.dumps(answer).encode())
            result = sb.execute(PRELUDE + self.config.code, timeout=self.config.timeout)
        ok = result.final_status == "ok"
        metrics: dict[str, Any] = {"status": result.final_status}
        text = result.text().strip()
        last = text.splitlines()[-1] if text else ""
        if ok and last.startswith("{"):
            try:
                parsed = json.loads(last)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                metrics.update(parsed)
        errors = [o for o in result.outputs if o.get("type") == "error"]
        if ok:
            reason = "all checks passed"
        elif errors:
            reason = f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}".strip()
        else:
            reason = f"check {result.final_status}: {result.message or text[-300:]}"
        return GradeResult(score=1.0 if ok else 0.0, passed=ok, field_scores={"check": float(ok)},
                           metrics=metrics, reasoning=reason)
