"""The files of an evolution folder, one pydantic model each (every file carries `schema_version`).

An evolution folder is append-only while it runs: a crash loses at most the
line being written, and `--resume` rebuilds everything else from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cellprompt.llm.base import Usage
from cellprompt.records.run import utcnow
from cellprompt.records.versioned import Versioned

EVOLVE_SCHEMA_VERSION = 1

StrategyName = str  # a name in `evolve.api.STRATEGIES`, checked when an evolution starts
Split = Literal["train", "val", "test"]
Origin = Literal["seed", "reflection", "merge"]
Verdict = Literal["evaluated", "accepted", "rejected", "flagged"]


class EvolveConfig(Versioned):
    """Everything that determines an evolution; saved as `evolve.json` so `--resume` needs only the id."""

    SCHEMA_VERSION = EVOLVE_SCHEMA_VERSION
    schema_version: int = EVOLVE_SCHEMA_VERSION
    evolution_id: str
    objective: str
    seed_prompt: str
    train_tasks: list[str] = Field(min_length=1)
    val_tasks: list[str] = Field(default_factory=list)  # empty: the train tasks double as validation
    test_tasks: list[str] = Field(default_factory=list)
    model: str
    reflection_model: str
    strategy: StrategyName = "iterative"
    budget_trials: int = Field(ge=1)
    max_proposals: int | None = Field(default=None, ge=1)  # `--iterations`: reflections to make at most
    replicates: int = Field(default=1, ge=1)
    max_prompt_words: int = Field(default=1500, ge=20)  # length budget of a candidate prompt
    copy_span_words: int = Field(default=12, ge=4)  # verbatim run from a task text that flags a candidate
    judge_weight: float = Field(default=0.0, ge=0.0, le=1.0)  # share of the judge grade in a trial's score
    judge_model: str | None = None
    judge_samples: int = Field(default=1, ge=1)  # judge samples per trial (their mean is the grade)
    judge_base_url: str | None = None  # the judge's own server (it is often another provider)
    minibatch: int = Field(default=3, ge=1)  # gepa: training tasks per reflection
    z_noise: float = Field(default=1.0, ge=0.0)  # how many standard errors a win must clear
    max_cost_usd: float | None = None
    reflection_max_tokens: int = Field(default=16000, ge=256)
    seed: int = 0
    # `evolve --fresh`: generated datasets (gen:…) drawn with this seed, one draw per evolution, kept
    # here (and in every trial's spec) so the evolution can be reproduced; None: the tasks' own data
    dataset_seed: int | None = None
    base_url: str | None = None
    sandbox_backend: str = "auto"
    parallel: int = Field(default=1, ge=1)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def validation_tasks(self) -> list[str]:
        return self.val_tasks or self.train_tasks


class CandidateRecord(Versioned):
    """One `evolution.jsonl` line: what happened to one candidate at one step.

    A candidate has several lines (evaluated on train, then on validation,
    accepted or rejected); `best_id`/`best_val` are the search's state after
    the step, so the progress curve is read straight off the file.
    """

    SCHEMA_VERSION = EVOLVE_SCHEMA_VERSION
    schema_version: int = EVOLVE_SCHEMA_VERSION
    candidate_id: str
    text: str
    parents: list[str] = Field(default_factory=list)
    origin: Origin = "reflection"
    split: Split | None = None
    task_scores: dict[str, list[float]] = Field(default_factory=dict)  # task ref -> one score per replicate
    mean_score: float | None = None
    trials: int = 0  # trials this step used (cached ones included)
    usage: Usage = Field(default_factory=Usage)  # agent usage of those trials
    reflection_usage: Usage = Field(default_factory=Usage)  # what proposing this candidate cost
    verdict: Verdict = "evaluated"
    flags: list[str] = Field(default_factory=list)  # length budget, copied spans
    reason: str = ""
    gate: dict[str, float] | None = None  # the paired comparison a verdict rested on (delta, se, z, tasks)
    trials_used: int = 0  # cumulative, after this step
    best_id: str | None = None
    best_val: float | None = None
    at: datetime = Field(default_factory=utcnow)


class SplitComparison(BaseModel):
    candidate_id: str
    task_scores: dict[str, list[float]]
    mean: float | None


class TestComparison(Versioned):
    """`test_comparison.json`: the seed and the best prompt on held-out tasks, side by side."""

    SCHEMA_VERSION = EVOLVE_SCHEMA_VERSION
    schema_version: int = EVOLVE_SCHEMA_VERSION
    tasks: list[str]
    replicates: int
    seed: SplitComparison
    best: SplitComparison
    delta: float | None  # best - seed
    delta_se: float | None  # paired standard error of that difference

    def ci95(self) -> tuple[float, float] | None:
        """The 95% interval of best − seed (normal, from the paired standard error); None without one."""
        if self.delta is None or self.delta_se is None:
            return None
        return self.delta - 1.96 * self.delta_se, self.delta + 1.96 * self.delta_se


class CostSummary(BaseModel):
    trials: int = 0
    agent: Usage = Field(default_factory=Usage)
    reflection: Usage = Field(default_factory=Usage)
    judge: Usage = Field(default_factory=Usage)

    @property
    def total_cost_usd(self) -> float:
        return self.agent.cost_usd + self.reflection.cost_usd + self.judge.cost_usd

    @property
    def cost_unknown(self) -> bool:
        """Some call had no known price: the total is a lower bound."""
        return self.agent.cost_unknown or self.reflection.cost_unknown or self.judge.cost_unknown


class EvolveSummary(Versioned):
    """`summary.json`: the outcome an evolution folder ends with."""

    SCHEMA_VERSION = EVOLVE_SCHEMA_VERSION
    schema_version: int = EVOLVE_SCHEMA_VERSION
    evolution_id: str
    strategy: StrategyName
    status: Literal["finished", "interrupted"]
    seed_id: str
    best_id: str
    best_val: float | None
    seed_val: float | None
    candidates: int
    cost: CostSummary
    test: TestComparison | None = None
    stop_reason: str = ""  # why the search ended (budget, cost cap, no new proposals, nothing to learn)
    warnings: list[str] = Field(default_factory=list)  # about the set-up, e.g. overlapping splits
    finished_at: datetime = Field(default_factory=utcnow)
