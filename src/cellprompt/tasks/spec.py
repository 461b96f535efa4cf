"""The task file schema (YAML on disk; `schema_version` 1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AnswerType = Literal["number", "integer", "string", "boolean", "list[string]", "list[number]",
                     "dict", "file"]
Category = Literal["qc", "normalization", "dimensionality_reduction", "clustering", "cell_typing",
                   "differential_expression", "marker_genes", "trajectory", "cell_cycle", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerField(_Strict):
    """One named field of the answer the agent submits."""

    name: str
    type: AnswerType
    description: str = ""
    # for type "file": the path under /workspace the agent must write (e.g. "labels.csv")
    path: str | None = None


class Withhold(_Strict):
    """Parts of the dataset removed from the agent's copy and kept as ground truth."""

    obs: list[str] = Field(default_factory=list)
    var: list[str] = Field(default_factory=list)
    uns: list[str] = Field(default_factory=list)
    obsm: list[str] = Field(default_factory=list)
    varm: list[str] = Field(default_factory=list)
    obsp: list[str] = Field(default_factory=list)


class ReferenceSolution(_Strict):
    """Code cells that solve the task; the last cell prints the answer as JSON on its last line."""

    cells: list[str] = Field(min_length=1)


class TaskLimits(_Strict):
    max_code_executions: int = 10
    max_turns: int = 20
    wall_time_s: float = 900.0
    execution_timeout_s: float = 300.0


class TaskMetadata(_Strict):
    category: Category = "other"
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    tags: list[str] = Field(default_factory=list)
    source: str | None = None  # e.g. "scbench" for imported evals


class Task(_Strict):
    schema_version: Literal[1] = 1
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    title: str
    dataset: str  # a dataset ref: builtin:NAME, a path, census:ID[@VERSION]
    objective: str  # what the agent is asked to do (its first user message)
    answer: list[AnswerField] = Field(default_factory=list)
    withhold: Withhold = Field(default_factory=Withhold)
    graders: list[dict[str, Any]] = Field(min_length=1)  # {"type": ..., "config": {...}}
    rubric: str | None = None  # extra criteria for the LLM judge
    reference: ReferenceSolution | None = None
    limits: TaskLimits = Field(default_factory=TaskLimits)
    metadata: TaskMetadata = Field(default_factory=TaskMetadata)
    traps: str = ""  # the plausible wrong approach and the wrong answer it gives
