"""What a strategy works with: the trial bank, the reflector, the budget, and the step log."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from cellprompt.evolve.budget import BudgetPlan
from cellprompt.evolve.evaluator import Measured, TrialBank
from cellprompt.evolve.evidence import evidence_texts
from cellprompt.evolve.folder import EvolutionFolder, text_id
from cellprompt.evolve.leaks import Fact
from cellprompt.evolve.reflection import Proposal, Reflector
from cellprompt.evolve.schema import CandidateRecord, EvolveConfig, Origin, Split, Verdict
from cellprompt.evolve.stats import NoiseModel, mean_of_task_means
from cellprompt.llm.base import Usage
from cellprompt.llm.cache import CachedModel


@dataclass(frozen=True)
class EvolveEvent:
    """Progress for the CLI's progress bar and for the simulation benchmark's curves."""

    kind: Verdict | str
    trials_used: int
    search_budget: int
    candidate_id: str
    best_id: str | None
    best_val: float | None
    best_text: str | None
    message: str = ""


@dataclass
class StrategyOutcome:
    seed_id: str
    best_text: str
    best_val: float | None
    seed_val: float | None
    stop_reason: str = ""  # why the search ended, for the console and the report


@dataclass
class EvolveContext:
    config: EvolveConfig
    folder: EvolutionFolder
    bank: TrialBank
    reflection_model: CachedModel  # replies recorded in the folder (`evaluator.recording`)
    reflector: Reflector
    plan: BudgetPlan
    on_event: Callable[[EvolveEvent], None] | None = None
    noise: NoiseModel = field(default_factory=NoiseModel)
    texts: dict[str, str] = field(default_factory=dict)  # candidate id -> text
    best_id: str | None = None
    best_val: float | None = None
    _origins: dict[str, tuple[list[str], Origin]] = field(default_factory=dict)  # id -> parents, origin
    _noise_seen: set[tuple[str, str, int]] = field(default_factory=set)
    _written: list[dict] | None = None  # lines already in evolution.jsonl (a replay writes none twice)

    def forbidden_texts(self) -> list[str]:
        refs = dict.fromkeys([*self.config.train_tasks, *self.config.validation_tasks])
        return [t for ref in refs for t in self.bank.task_texts(ref)]

    def leak_facts(self) -> list[Fact]:
        """Facts of every train, validation and test task: none may appear in a candidate."""
        cfg = self.config
        refs = dict.fromkeys([*cfg.train_tasks, *cfg.validation_tasks, *cfg.test_tasks])
        return [f for ref in refs for f in self.bank.task_facts(ref)]

    def spent_usd(self) -> float:
        agent, judge = self.bank.stored_usage()
        return agent.cost_usd + judge.cost_usd + self.reflection_model.recorded_usage().cost_usd

    def can_afford(self, trials: int) -> bool:
        if self.bank.trials_used + trials > self.plan.search:
            return False
        return self.config.max_cost_usd is None or self.spent_usd() < self.config.max_cost_usd

    def measure(
        self, text: str, tasks: list[str], *, first_replicate: int = 0, replicates: int | None = None
    ) -> Measured:
        self.texts[text_id(text)] = text
        m = self.bank.measure(
            text, tasks, replicates or self.config.replicates, first_replicate=first_replicate
        )
        # each replicate enters the noise model once, however often it is asked for; unscored never
        for b, s in zip(m.trials, m.trial_scores, strict=True):
            key = (m.prompt_id, b.task_ref, b.replicate)
            if s is not None and key not in self._noise_seen:
                self._noise_seen.add(key)
                self.noise.add(m.prompt_id, b.task_ref, [s])
        return m

    def set_best(self, candidate_id: str, val: float | None) -> None:
        self.best_id, self.best_val = candidate_id, val

    def log(
        self,
        text: str,
        *,
        verdict: Verdict,
        split: Split | None = None,
        measured: Measured | None = None,
        parents: list[str] | None = None,
        origin: Origin | None = None,
        flags: list[str] | None = None,
        reason: str = "",
        reflection_usage: Usage | None = None,
        gate: dict[str, float] | None = None,
    ) -> None:
        """Append one step to evolution.jsonl and tell the caller; a replayed step is not written twice."""
        cid = text_id(text)
        self.texts[cid] = text
        known = self._origins.get(cid)
        if parents or origin or known is None:
            origin = origin or ("seed" if text == self.config.seed_prompt else "reflection")
            known = self._origins.setdefault(cid, (parents or [], origin))
        parents, origin = (parents or known[0]), (origin or known[1])
        scores = measured.task_scores if measured else {}
        record = CandidateRecord(
            candidate_id=cid,
            text=text,
            parents=parents or [],
            origin=origin,
            split=split,
            task_scores=scores,
            mean_score=mean_of_task_means(scores) if scores else None,
            trials=measured.count if measured else 0,
            usage=measured.usage if measured else Usage(),
            reflection_usage=reflection_usage or Usage(),
            verdict=verdict,
            flags=flags or [],
            reason=reason,
            gate=gate,
            trials_used=self.bank.trials_used,
            best_id=self.best_id,
            best_val=self.best_val,
        )
        if self._written is None:
            self._written = [r.model_dump(exclude={"at"}) for r in self.folder.candidates()]
        line = record.model_dump(exclude={"at"})
        if line not in self._written:
            self._written.append(line)
            self.folder.append_candidate(record)
        if self.on_event is not None:
            self.on_event(
                EvolveEvent(
                    kind=verdict,
                    trials_used=self.bank.trials_used,
                    search_budget=self.plan.search,
                    candidate_id=cid,
                    best_id=self.best_id,
                    best_val=self.best_val,
                    best_text=self.texts.get(self.best_id or ""),
                    message=reason,
                )
            )

    def log_refused(
        self, proposal: Proposal, parent_id: str, whole: Callable[[str], str] | None = None
    ) -> None:
        """Every text the checks refused (leak, copy, length) is kept with its reasons, never run.

        `whole` turns a refused section into the whole prompt it would have made (gepa).
        """
        refused = proposal.refused or (
            [(proposal.rejected or "", proposal.flags)] if proposal.text is None else []
        )
        for text, flags in refused:
            self.log(
                whole(text) if whole and text else text,
                verdict="flagged",
                parents=[parent_id],
                flags=flags,
                reason="; ".join(flags),
                reflection_usage=proposal.usage if proposal.text is None else None,
            )

    def evidence(self, measured: Measured) -> list[str]:
        """What the reflection model reads about a candidate's trials (`evidence.evidence_texts`)."""
        return evidence_texts([(b.record, b.evaluation) for b in measured.trials], self.bank.judge_weight)


def describe_change(old: str, new: str, limit: int = 400) -> str:
    """A one-line account of a rejected rewrite, so the next reflection does not repeat it."""
    added = [
        ln[1:].strip()
        for ln in difflib.ndiff(old.splitlines(), new.splitlines())
        if ln.startswith("+ ") and ln[1:].strip()
    ]
    removed = [
        ln[1:].strip()
        for ln in difflib.ndiff(old.splitlines(), new.splitlines())
        if ln.startswith("- ") and ln[1:].strip()
    ]
    text = ("added: " + " | ".join(added) if added else "") + (
        ("; removed: " + " | ".join(removed)) if removed else ""
    )
    return (text or "reworded only")[:limit]
