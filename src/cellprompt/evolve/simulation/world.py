"""The simulated world: tasks whose graders pass according to the rules a prompt states, and the
evaluator whose trials are draws from it.

A trial's graders pass with probability `p_hit` when the prompt states the rule
a grader checks (and no harmful line cancels it), `p_miss` when it does not;
every word beyond a comfortable length dilutes all of them. Training tasks also
carry decoy graders. `quality` is the noise-free expected score: the truth a
strategy can only estimate, and what the benchmark reports.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from cellprompt.evolve.checks import words
from cellprompt.evolve.simulation.rules import (
    ALL_RULES,
    DECOY_RULES,
    HARMFUL,
    OBJECTIVE_WORDS,
    USEFUL_RULES,
    has_phrase,
)
from cellprompt.grading.base import GradeResult
from cellprompt.llm.base import Usage
from cellprompt.records.run import ExecutionRecord, TrialRecord, TrialSpec, Turn


@dataclass(frozen=True)
class SimTask:
    ref: str
    needs: tuple[str, ...]  # useful rule ids
    decoys: tuple[str, ...]  # decoy rule ids (training tasks only)
    objective: str


@dataclass
class SimWorld:
    """Tasks, rules and the scoring law; `quality` is the noise-free truth the benchmark reports."""

    seed: int = 0
    n_train: int = 6
    n_val: int = 6
    n_test: int = 6
    p_hit: float = 0.9
    p_miss: float = 0.15
    comfort_words: int = 200
    dilution: float = 0.35  # relative loss per comfort-length of extra words
    tasks: dict[str, SimTask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        rule_ids = [r.id for r in USEFUL_RULES]
        decoys = [r.id for r in DECOY_RULES]
        for split, n in (("train", self.n_train), ("val", self.n_val), ("test", self.n_test)):
            for i in range(n):
                needs = tuple(sorted(rng.sample(rule_ids, rng.randint(3, 5))))
                dec = (decoys[i % len(decoys)],) if split == "train" else ()
                start = rng.randint(0, len(OBJECTIVE_WORDS) - 20)
                objective = (
                    f"Task {split}-{i}: "
                    + " ".join(OBJECTIVE_WORDS[start : start + 20])
                    + f". Report the result for question {i}."
                )
                ref = f"sim:{split}-{i}"
                self.tasks[ref] = SimTask(ref=ref, needs=needs, decoys=dec, objective=objective)

    def split(self, name: str) -> list[str]:
        return [ref for ref in self.tasks if ref.startswith(f"sim:{name}-")]

    def _dilute(self, prompt: str) -> float:
        extra = max(0, len(words(prompt)) - self.comfort_words)
        return max(0.0, 1.0 - self.dilution * extra / self.comfort_words)

    def pass_probs(self, prompt: str, task_ref: str) -> dict[str, float]:
        task = self.tasks[task_ref]
        pw = words(prompt)
        factor = self._dilute(prompt)
        rules = ALL_RULES
        cancelled = {rid for line, ids in HARMFUL.items() if has_phrase(pw, line[2:]) for rid in ids}
        return {
            rid: (self.p_hit if has_phrase(pw, rules[rid].phrase) and rid not in cancelled else self.p_miss)
            * factor
            for rid in (*task.needs, *task.decoys)
        }

    def quality(self, prompt: str, task_refs: list[str]) -> float:
        """The expected trial score: the truth a strategy can only estimate."""
        vals = [sum(p.values()) / len(p) for p in (self.pass_probs(prompt, t) for t in task_refs)]
        return sum(vals) / len(vals)


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


class SimEvaluator:
    """An `Evaluator` whose trials are draws from `SimWorld`; a pure function of (prompt, task, replicate)."""

    store = None  # the trial bank writes what it returns into the evolution's run store

    def __init__(self, world: SimWorld, model: str = "sim:agent") -> None:
        self.world = world
        self.model = model
        self.calls = 0  # trials actually simulated (resume tests count them)

    def task_texts(self, task_ref: str) -> list[str]:
        return [self.world.tasks[task_ref].objective]

    def evaluate(
        self, prompt: str, task_refs: list[str], replicates: int, *, first_replicate: int = 0
    ) -> list[TrialRecord]:
        rules = ALL_RULES
        out: list[TrialRecord] = []
        pid = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        for ref in task_refs:
            task = self.world.tasks[ref]
            probs = self.world.pass_probs(prompt, ref)
            for rep in range(first_replicate, first_replicate + replicates):
                self.calls += 1
                rng = _rng(self.world.seed, pid, ref, rep)
                grades = []
                for rid, p in probs.items():
                    ok = rng.random() < p
                    grades.append(
                        GradeResult(
                            grader=f"check_{rid}",
                            score=1.0 if ok else 0.0,
                            passed=ok,
                            reasoning="" if ok else rules[rid].symptom,
                        )
                    )
                score = sum(g.score for g in grades) / len(grades)
                tid = f"{ref}-r{rep}-{pid}"
                code = "import scanpy as sc\nadata = sc.read_h5ad('/data/sim.h5ad')\n" + "\n".join(
                    f"# step: {rid}" for rid, g in zip(probs, grades, strict=True) if g.passed
                )
                out.append(
                    TrialRecord(
                        trial_id=tid,
                        status="submitted",
                        first_message=task.objective,
                        grades=grades,
                        score=score,
                        passed=all(g.passed for g in grades),
                        answer={"result": round(score, 2)},
                        usage=Usage(input_tokens=2000, output_tokens=400, cost_usd=0.01),
                        turns=[
                            Turn(
                                index=0,
                                assistant_text="running the analysis",
                                executions=[ExecutionRecord(code=code, outputs=[], final_status="ok")],
                            )
                        ],
                        spec=TrialSpec(
                            trial_id=tid,
                            prompt_id=pid,
                            prompt=prompt,
                            task_id=ref.split(":", 1)[1],
                            task_ref=ref,
                            model=self.model,
                            replicate=rep,
                        ),
                    )
                )
        return out
