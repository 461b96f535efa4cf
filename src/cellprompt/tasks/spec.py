"""The task file schema (YAML on disk; `schema_version` 1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from cellprompt.records.run import Limits

AnswerType = Literal["number", "integer", "string", "boolean", "list[string]", "list[number]",
                     "dict", "file"]
TaskKind = Literal["sealed", "open"]  # sealed: graders and truth; open: an analysis the judge grades
Category = Literal["qc", "normalization", "dimensionality_reduction", "clustering", "cell_typing",
                   "differential_expression", "marker_genes", "trajectory", "cell_cycle", "doublets",
                   "batch_integration", "composition", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerField(_Strict):
    """One named field of the answer the agent submits."""

    name: str
    type: AnswerType
    description: str = ""
    # for type "file": the path under /workspace the agent must write (e.g. "labels.csv")
    path: str | None = None
    # for type "file": its CSV header (e.g. ["cell_id", "pseudotime"]); cheat probes write it
    columns: list[str] | None = None


class Withhold(_Strict):
    """Parts of the dataset removed from the agent's copy and kept as ground truth."""

    obs: list[str] = Field(default_factory=list)
    var: list[str] = Field(default_factory=list)
    uns: list[str] = Field(default_factory=list)
    obsm: list[str] = Field(default_factory=list)
    varm: list[str] = Field(default_factory=list)
    obsp: list[str] = Field(default_factory=list)


class Seal(_Strict):
    """How the agent's copy is sealed so nothing but analysis reaches the truth.

    Rows are shuffled and cell ids replaced by salted hashes (order and ids carry no
    truth). `subsample` and `perturb` default to "auto": applied when the source is public
    (a library-bundled or Census dataset that could be joined back to its original).
    """

    shuffle: bool = True
    hash_ids: bool = True
    subsample: float | None = Field(default=None, gt=0, le=1)  # fraction of cells kept
    perturb: float | None = Field(default=None, ge=0, le=0.2)  # relative noise on float values


class TruthRecipe(_Strict):
    """A named truth computation (`cellprompt.tasks.truths`) run on the sealed copy, on the host."""

    recipe: str
    params: dict[str, Any] = Field(default_factory=dict)


class Variant(_Strict):
    """One solution of the validity kit: a valid alternative that must pass, or a wrong one."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    expect: Literal["pass", "fail"]
    why: str = ""
    cells: list[str] = Field(min_length=1)


class ReferenceSolution(_Strict):
    """Code cells that solve the task; the last cell prints the answer as JSON on its last line."""

    cells: list[str] = Field(min_length=1)


class TaskLimits(_Strict):
    max_code_executions: int = 10
    max_turns: int = 20
    wall_time_s: float = 900.0
    execution_timeout_s: float = 300.0
    # the sandbox memory the analysis needs (e.g. "16g"); a smaller limit is refused up front
    memory: str | None = Field(default=None, pattern=r"^\s*[0-9]*\.?[0-9]+\s*[bkmgtBKMGT]?[iI]?[bB]?\s*$")

    def agent_limits(self) -> Limits:
        """The task's limits on the agent, as the defaults a trial's own `Limits` override."""
        return Limits(max_code_executions=self.max_code_executions, max_turns=self.max_turns,
                      wall_time_s=self.wall_time_s, execution_timeout_s=self.execution_timeout_s)


class TaskMetadata(_Strict):
    category: Category = "other"
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    tags: list[str] = Field(default_factory=list)
    source: str | None = None  # e.g. "scbench" for imported evals
    # answerable without the data (memory, not analysis): kept out of the default suite
    knowledge_only: bool = False


class Task(_Strict):
    schema_version: Literal[1] = 1
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: TaskKind = "sealed"  # before `graders`: their check reads it
    title: str
    dataset: str  # a dataset ref: builtin:NAME, a path, census:ID[@VERSION]
    objective: str  # what the agent is asked to do (its first user message)
    answer: list[AnswerField] = Field(default_factory=list)
    withhold: Withhold = Field(default_factory=Withhold)
    graders: list[dict[str, Any]] = Field(default_factory=list, validate_default=True)  # {type, config}
    rubric: str | None = None  # extra criteria for the LLM judge
    reference: ReferenceSolution | None = None
    seal: Seal = Field(default_factory=Seal)
    truth: TruthRecipe | None = None  # truth recomputed on the sealed copy
    variants: list[Variant] = Field(default_factory=list)  # the validity kit beside the reference
    limits: TaskLimits = Field(default_factory=TaskLimits)
    metadata: TaskMetadata = Field(default_factory=TaskMetadata)
    traps: str = ""  # the plausible wrong approach and the wrong answer it gives

    @field_validator("graders")
    @classmethod
    def _graders_fit_kind(cls, value: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        """A sealed task is scored by its graders; an open one only by the LLM judge."""
        kind = info.data.get("kind", "sealed")
        if kind == "sealed" and not value:
            raise ValueError("a sealed task needs at least one grader (or set `kind: open` for a "
                             "judge-graded open analysis)")
        if kind == "open" and value:
            raise ValueError("an open task is graded by the LLM judge only: remove `graders` "
                             "or set `kind: sealed`")
        return value
