"""The simulated world is an honest yardstick: its reflection model learns from the evidence
whatever its format, the naive loop is sent the very request the strategies send, the harder
world's reflection model does harm, and the benchmark's figures come with intervals."""

from __future__ import annotations

from typing import Any

from cellprompt.evolve.reflection import CLOSE, OPEN, extract_prompt
from cellprompt.evolve.simulation import SEED_PROMPT, USEFUL_RULES, SimReflectionModel, SimWorld
from cellprompt.evolve.simulation.benchmark import SCENARIOS, STRATEGIES, naive_loop, one_seed, summarise
from cellprompt.evolve.simulation.rules import HARMFUL
from cellprompt.llm.base import ChatReply, Message

RULE = USEFUL_RULES[2]  # doublets


def _rewrite(model: SimReflectionModel, request: str) -> str:
    reply = model.complete([Message(role="user", content=request)])
    return extract_prompt(reply.message.content) or ""


def test_the_reflection_model_reads_symptoms_in_any_format() -> None:
    request = f"{OPEN}\n{SEED_PROMPT}\n{CLOSE}\nWhat went wrong, in my own words: {RULE.symptom}. Fix it."
    new = _rewrite(SimReflectionModel(seed=0, error_rate=0.0, copy_rate=0.0), request)
    assert RULE.line in new
    told_nothing = _rewrite(SimReflectionModel(seed=0, error_rate=0.0, copy_rate=0.0),
                            f"{OPEN}\n{SEED_PROMPT}\n{CLOSE}\nGrade: 0.20")
    assert RULE.line not in told_nothing  # a bare grade gives it nothing to go on


def test_the_harder_worlds_reflection_model_does_harm() -> None:
    world = SimWorld(seed=0)
    tasks = world.split("val")
    good = SEED_PROMPT + "\n".join(r.line for r in USEFUL_RULES[:6])
    request = f"{OPEN}\n{good}\n{CLOSE}\n{USEFUL_RULES[8].symptom}"
    quality = {}
    for harm in (0.0, 1.0):
        rewrites = [_rewrite(SimReflectionModel(seed=s, error_rate=0.0, harm_rate=harm, copy_rate=0.0),
                             request) for s in range(20)]
        quality[harm] = sum(world.quality(r, tasks) for r in rewrites) / len(rewrites)
        if harm:
            assert sum(any(line in r for line in HARMFUL) for r in rewrites) >= 5
    assert quality[1.0] < quality[0.0] - 0.03


class Recording(SimReflectionModel):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.requests: list[list[Message]] = []

    def complete(self, messages: list[Message], **kwargs: Any) -> ChatReply:
        self.requests.append(messages)
        return super().complete(messages, **kwargs)


def test_the_naive_loop_gets_the_strategies_request_and_evidence() -> None:
    world = SimWorld(seed=1)
    model = Recording(seed=1)
    curve = naive_loop(world, model, budget=24)
    assert [t for t, _ in curve] == [0, 6, 12, 18, 24]
    first = model.requests[0]
    assert first[0].role == "system" and "Failed graders:" in first[1].content
    assert "# Evidence: trials run with the current prompt" in first[1].content
    assert any(r.symptom in first[1].content for r in USEFUL_RULES)


def test_the_benchmark_reports_intervals_for_every_strategy() -> None:
    budget = 90
    per_seed = [one_seed(SCENARIOS["harder"], seed, budget) for seed in range(2)]
    figures = summarise({n: [s[n] for s in per_seed] for n in STRATEGIES}, budget, resamples=200)
    assert [f.name for f in figures] == list(STRATEGIES)
    naive = figures[0]
    assert naive.share == 1.0 and naive.reach == 90
    for f in figures:
        assert f.gain_ci[0] <= f.gain <= f.gain_ci[1]
        assert f.reach_ci[0] <= f.reach_ci[1] and len(f.grid) == 11
