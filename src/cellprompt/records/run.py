"""The files of a run folder: `run.json`, one `trials.jsonl` line per finished trial, and
`evaluations.jsonl`.

A trial is a pure function of its `TrialSpec`; the `TrialRecord` it returns
holds everything needed to read, re-grade, judge or export it later. These are the bottom
layer's records because the agent loop, the graders and the judge all build or read them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from cellprompt.records.grades import GradeResult
from cellprompt.records.usage import ToolCall, Usage
from cellprompt.records.versioned import Versioned

SCHEMA_VERSION = 1

TrialStatus = Literal["submitted", "limit_reached", "error"]
LimitName = Literal["max_code_executions", "max_turns", "max_output_tokens", "max_cost", "wall_time"]
RunStatus = Literal["running", "finished", "interrupted", "failed"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Limits(BaseModel):
    """Agent limits of one trial; unset fields fall back to the task's own limits."""

    max_code_executions: int | None = None
    max_turns: int | None = None
    max_output_tokens: int = 4096  # per model call
    max_cost_usd: float | None = None
    wall_time_s: float | None = None
    execution_timeout_s: float | None = None
    send_images: bool = True  # figures go back to models that accept images

    def merged(self, defaults: Limits) -> Limits:
        """These limits, each unset (None) one taken from `defaults` (the task's own)."""
        mine = self.model_dump(exclude_none=True)
        return Limits.model_validate({**defaults.model_dump(), **mine})


class TrialSpec(BaseModel):
    """Everything that determines a trial; hashing it gives the trial id."""

    trial_id: str
    prompt_id: str
    prompt: str  # the system prompt under test
    task_id: str
    task_ref: str  # builtin id or path of the task file, re-loadable by a worker
    model: str  # model spec, e.g. "openai:gpt-4o", "reference"
    base_url: str | None = None
    replicate: int = 0
    limits: Limits = Field(default_factory=Limits)
    sandbox_backend: str = "auto"
    task_kind: Literal["sealed", "open"] = "sealed"  # open: judged only, ends with a written report
    # `run --fresh`: a generated dataset (gen:…) is drawn with this seed instead of the task's own
    dataset_seed: int | None = None


class ExecutionRecord(BaseModel):
    """One code execution. Figures are not inlined: every `image/png` in `outputs` is replaced
    by the artifact path (relative to the run folder) of the PNG file written for it, and
    `images` lists those paths in order."""

    code: str
    outputs: list[dict[str, Any]]  # as the kernel service returned them; images as artifact paths
    final_status: Literal["ok", "error", "timeout", "died"]
    execution_count: int | None = None
    duration_s: float = 0.0
    message: str | None = None
    images: list[str] = Field(default_factory=list)  # paths relative to the run folder


class Turn(BaseModel):
    """One model call and what the loop did with its reply."""

    index: int
    assistant_text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    executions: list[ExecutionRecord] = Field(default_factory=list)
    feedback: str = ""  # what went back to the model as text (tool results / next user message)
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    stop_reason: str | None = None


class TrialRecord(Versioned):
    SCHEMA_VERSION = SCHEMA_VERSION
    schema_version: int = SCHEMA_VERSION
    trial_id: str
    spec: TrialSpec
    status: TrialStatus
    limit: LimitName | None = None
    error: str | None = None
    first_message: str = ""  # the task objective + data description the agent received
    turns: list[Turn] = Field(default_factory=list)
    answer: dict[str, Any] | None = None
    report: str | None = None  # open analyses: the agent's written report (workspace file or final message)
    report_source: str | None = None  # where the report came from: "workspace:report.md" or "message"
    grades: list[GradeResult] = Field(default_factory=list)
    score: float | None = None  # mean of grader scores; None when not gradable
    passed: bool = False  # every grader passed
    usage: Usage = Field(default_factory=Usage)
    wall_s: float = 0.0
    model_s: float = 0.0
    exec_s: float = 0.0
    grade_s: float = 0.0  # graders, including python_check's own sandbox
    node: str | None = None  # the Ray node that ran the trial (`--executor ray`); None: the driver's machine
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime = Field(default_factory=utcnow)

    @property
    def code_cells(self) -> list[ExecutionRecord]:
        return [e for t in self.turns for e in t.executions]


class RunManifest(Versioned):
    SCHEMA_VERSION = SCHEMA_VERSION
    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: RunStatus = "running"
    command: str = ""
    config: dict[str, Any] = Field(default_factory=dict)  # the matrix: prompts, tasks, models, ...
    versions: dict[str, str] = Field(default_factory=dict)  # cellprompt and key packages
    sandbox: dict[str, Any] = Field(default_factory=dict)  # backend, image
    total_trials: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class JudgeCriterion(BaseModel):
    name: str
    score: float  # 0..10
    comment: str = ""


class JudgeSample(BaseModel):
    criteria: list[JudgeCriterion] = Field(default_factory=list)
    grade: float  # 0..100
    comments: str = ""


class Evaluation(Versioned):
    """One `evaluations.jsonl` line: the judge's verdict on one trial."""

    SCHEMA_VERSION = SCHEMA_VERSION
    schema_version: int = SCHEMA_VERSION
    trial_id: str
    judge_model: str
    ok: bool  # False: every attempt failed; `error` says why (never a silent -1)
    error: str | None = None
    samples: list[JudgeSample] = Field(default_factory=list)
    grade_mean: float | None = None
    grade_sd: float | None = None
    grade_range: float | None = None  # max - min over samples: the judge's own disagreement
    disagreement: bool = False  # samples disagree by more than the judge's tolerance (see judge.py)
    figures_shown: int = 0  # figures the (vision-capable) judge saw
    usage: Usage = Field(default_factory=Usage)
    judged_at: datetime = Field(default_factory=utcnow)
