"""What a strategy needs from the outside world, and the memory that makes resume free.

Strategies see only an `Evaluator` (prompt × tasks × replicates -> trial
records) and a reflection `ChatModel`. The runner-backed evaluator runs real
agents; the simulation benchmark and the tests plug in simulated ones. Both are
wrapped here so that every trial and every reflection reply is written to the
evolution folder the moment it exists: a resumed evolution replays its path
from these files and spends nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cellprompt.evolve.evidence import fitness, scorable
from cellprompt.evolve.folder import BankedTrial, CachedReply, EvolutionFolder, text_id
from cellprompt.evolve.leaks import Fact
from cellprompt.llm.base import ChatModel, ChatReply, Message, ToolSpec, Usage
from cellprompt.records.run import Evaluation, TrialRecord

Judge = Callable[[TrialRecord], Evaluation]
ERROR_RETRIES = 2  # per trial and session: an outage is retried, a broken setup does not loop forever


@runtime_checkable
class Evaluator(Protocol):
    """Runs a prompt on tasks; the only door from a strategy to agents."""

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
                evaluation = self.judge(record) if self.judge is not None else None
                banked = BankedTrial(
                    prompt_id=pid, task_ref=key[1], replicate=key[2], record=record, evaluation=evaluation
                )
                self.folder.append_trial(banked)
                self._bank[key] = banked
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
        again = BankedTrial(prompt_id=key[0], task_ref=key[1], replicate=key[2], record=record,
                            evaluation=evaluation)
        self.folder.append_trial(again)  # the later line wins when the folder is read back
        self._bank[key] = again

    def _rejudge(self, banked: BankedTrial) -> bool:
        key = (banked.prompt_id, banked.task_ref, banked.replicate)
        ev = banked.evaluation
        if self.judge is None or (ev is not None and ev.ok) or key in self._rejudged:
            return False
        if banked.record.status == "error":
            return False
        self._rejudged.add(key)
        again = banked.model_copy(update={"evaluation": self.judge(banked.record)})
        self.folder.append_trial(again)  # the later line wins when the folder is read back
        self._bank[key] = again
        return True


class RecordingChatModel:
    """A reflection model whose replies are kept on disk, so a replayed request costs nothing."""

    def __init__(self, inner: ChatModel, folder: EvolutionFolder) -> None:
        self.inner = inner
        self.folder = folder
        self.spec = inner.spec
        self.provider = inner.provider
        self.supports_tools = inner.supports_tools
        self.supports_images = inner.supports_images
        self._cache = {c.key: c.reply for c in folder.replies()}

    def stored_usage(self) -> Usage:
        total = Usage()
        for reply in self._cache.values():
            total = total + reply.usage
        return total

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        payload = {
            "model": self.spec,
            "messages": [m.model_dump(mode="json") for m in messages],
            "tools": [t.model_dump(mode="json") for t in tools or []],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "schema": response_schema,
        }
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        if key in self._cache:
            return self._cache[key]
        reply = self.inner.complete(
            messages,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            response_schema=response_schema,
        )
        self.folder.append_reply(CachedReply(key=key, reply=reply))
        self._cache[key] = reply
        return reply
