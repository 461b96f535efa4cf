"""What a strategy needs from the outside world, and the memory that makes resume free.

Strategies see only an `Evaluator` (prompt × tasks × replicates -> trial
records) and a reflection `ChatModel`. The runner-backed evaluator runs real
agents; the simulation benchmark and the tests plug in simulated ones. Every
trial lands in one place, the evolution's run store (`run/`, with the judge's
evaluations beside it), and every reflection reply in the response cache of the
evolution folder, the moment it exists: a resumed evolution replays its path
from these and spends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cellprompt.errors import EvolveError
from cellprompt.evolve.evidence import fitness, scorable
from cellprompt.evolve.folder import BankedTrial, EvolutionFolder, text_id
from cellprompt.evolve.leaks import Fact
from cellprompt.llm.base import ChatModel, Usage
from cellprompt.llm.cache import CachedModel
from cellprompt.records.run import Evaluation, TrialRecord
from cellprompt.runs.store import RunStore

Judge = Callable[[TrialRecord], Evaluation]
ERROR_RETRIES = 2  # per trial and session: an outage is retried, a broken setup does not loop forever


@runtime_checkable
class Evaluator(Protocol):
    """Runs a prompt on tasks; the only door from a strategy to agents.

    `store`: the run store the evaluator appends each trial to itself as it ends
    (the runner does: it must be the evolution's `run/`), or None when the trial
    bank is to write the records it returns (simulations).
    """

    @property
    def store(self) -> RunStore | None: ...

    def evaluate(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> list[TrialRecord]:
        """One record per (task, replicate), task-major, replicates `first_replicate`…+`replicates`-1."""
        ...

    def task_texts(self, task_ref: str) -> list[str]:
        """The texts of a task a prompt must not copy from (objective, traps, rubric)."""
        ...


@dataclass
class Measured:
    """A prompt's trials on some tasks, with their scores in [0, 1]."""

    prompt_id: str
    trials: list[BankedTrial]
    task_scores: dict[str, list[float]]  # scorable trials only
    usage: Usage = field(default_factory=Usage)
    trial_scores: list[float | None] = field(default_factory=list)  # per trial; None: left out
    unscored: int = 0  # trials left out of the means (infrastructure errors, failed judgements)

    @property
    def count(self) -> int:
        return len(self.trials)


class TrialBank:
    """Every trial of an evolution, asked for by (prompt, task, replicate); each is run once (an
    errored one is run again up to `ERROR_RETRIES` times per session, so resume retries it too).

    `trials_used` counts the distinct trials the strategy has asked for in this
    session: a replayed path counts its trials again, exactly as it first did.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        folder: EvolutionFolder,
        *,
        judge: Judge | None = None,
        judge_weight: float = 0.0,
    ) -> None:
        self.evaluator = evaluator
        self.folder = folder
        self.store = folder.run_store()
        if evaluator.store is not None and evaluator.store.path.resolve() != self.store.path.resolve():
            raise EvolveError(f"the evaluator writes to {evaluator.store.path}, not to the evolution's "
                              f"run folder {self.store.path}: pass folder.run_store()")
        self._writes = evaluator.store is None  # the runner appends its own records
        self.judge = judge
        self.judge_weight = judge_weight if judge is not None else 0.0
        self._bank: dict[tuple[str, str, int], BankedTrial] = {
            (b.prompt_id, b.task_ref, b.replicate): b for b in folder.trials()
        }
        self._used: set[tuple[str, str, int]] = set()
        self._rejudged: set[tuple[str, str, int]] = set()
        self._retried: dict[tuple[str, str, int], int] = {}  # errored trials run again, this session
        self._texts: dict[str, list[str]] = {}
        self._facts: dict[str, list[Fact]] = {}

    @property
    def trials_used(self) -> int:
        return len(self._used)

    def count_stored_as_used(self) -> None:
        """For strategies that resume from their own saved state instead of replaying their path."""
        self._used.update(self._bank)

    def stored_usage(self) -> tuple[Usage, Usage]:
        """(agent, judge) usage of every trial ever run for this evolution."""
        agent, judge = Usage(), Usage()
        for b in self._bank.values():
            agent = agent + b.record.usage
            if b.evaluation is not None:
                judge = judge + b.evaluation.usage
        return agent, judge

    def task_texts(self, task_ref: str) -> list[str]:
        if task_ref not in self._texts:
            self._texts[task_ref] = self.evaluator.task_texts(task_ref)
        return self._texts[task_ref]

    def task_facts(self, task_ref: str) -> list[Fact]:
        """The leak guard's facts of a task; evaluators without `task_facts` (simulations) have none."""
        if task_ref not in self._facts:
            source = getattr(self.evaluator, "task_facts", None)
            self._facts[task_ref] = list(source(task_ref)) if callable(source) else []
        return self._facts[task_ref]

    def measure(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> Measured:
        pid = text_id(prompt)
        wanted = [
            (pid, t, r) for t in task_refs for r in range(first_replicate, first_replicate + replicates)
        ]
        missing_tasks = [
            t
            for t in task_refs
            if any(
                (pid, t, r) not in self._bank for r in range(first_replicate, first_replicate + replicates)
            )
        ]
        if missing_tasks:
            records = self.evaluator.evaluate(
                prompt, missing_tasks, replicates, first_replicate=first_replicate
            )
            expected = len(missing_tasks) * replicates
            if len(records) != expected:
                raise RuntimeError(f"evaluator returned {len(records)} records for {expected} trials")
            keys = [
                (pid, t, r)
                for t in missing_tasks
                for r in range(first_replicate, first_replicate + replicates)
            ]
            for key, record in zip(keys, records, strict=True):
                if key in self._bank:
                    continue
                judged = self.judge(record) if self.judge is not None and record.status != "error" else None
                self._bank[key] = self._keep(key, record, judged)
        for key in wanted:  # an outage (now or before a resume) is retried, a bounded number of times
            while self._bank[key].record.status == "error" and self._retried.get(key, 0) < ERROR_RETRIES:
                self._retried[key] = self._retried.get(key, 0) + 1
                self._run_again(prompt, key)
        for key in wanted:  # a judgement that failed earlier (or before a resume) is tried again once
            b = self._bank[key]
            if self._rejudge(b):
                b = self._bank[key]
        trials = [self._bank[k] for k in wanted]
        self._used.update(wanted)
        scores: dict[str, list[float]] = {t: [] for t in task_refs}
        per_trial: list[float | None] = []
        usage = Usage()
        for b in trials:
            if scorable(b.record, b.evaluation, self.judge_weight):
                value = fitness(b.record, b.evaluation, self.judge_weight)
                scores[b.task_ref].append(value)
                per_trial.append(value)
            else:
                per_trial.append(None)
            usage = usage + b.record.usage
        return Measured(prompt_id=pid, trials=trials, task_scores=scores, usage=usage,
                        trial_scores=per_trial, unscored=per_trial.count(None))

    def _run_again(self, prompt: str, key: tuple[str, str, int]) -> None:
        """One more try of an errored trial; its record replaces the banked one whatever it says."""
        (record,) = self.evaluator.evaluate(prompt, [key[1]], 1, first_replicate=key[2])
        evaluation = self.judge(record) if self.judge is not None and record.status != "error" else None
        self._bank[key] = self._keep(key, record, evaluation)  # the later line wins when read back

    def _keep(self, key: tuple[str, str, int], record: TrialRecord,
              evaluation: Evaluation | None) -> BankedTrial:
        """Into the run store: the record (unless the evaluator wrote it) and the judge's verdict."""
        if self._writes:
            self.store.append_trial(record)
        if evaluation is not None:
            self.store.append_evaluation(evaluation)
        return BankedTrial(prompt_id=key[0], task_ref=key[1], replicate=key[2], record=record,
                           evaluation=evaluation)

    def _rejudge(self, banked: BankedTrial) -> bool:
        key = (banked.prompt_id, banked.task_ref, banked.replicate)
        ev = banked.evaluation
        if self.judge is None or (ev is not None and ev.ok) or key in self._rejudged:
            return False
        if banked.record.status == "error":
            return False
        self._rejudged.add(key)
        evaluation = self.judge(banked.record)
        self.store.append_evaluation(evaluation)  # the later line wins when the store is read back
        self._bank[key] = banked.model_copy(update={"evaluation": evaluation})
        return True


def recording(model: ChatModel, folder: EvolutionFolder) -> CachedModel:
    """The reflection model with every reply kept in the folder and served as recorded on a replay."""
    return CachedModel(model, folder.reflections_dir, as_recorded=True)

