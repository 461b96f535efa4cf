"""What `benchmarks/evolution_sim.py` measures: each strategy against the naive loop, in two worlds.

The naive loop is the original rewrite loop with the strategies' own evidence:
each round it runs the current prompt once per training task, sends the
reflection model the very request the strategies send (same evidence text, same
model, same token allowance) and keeps whatever comes back. What the strategies
add is selection: gates, validation, noise-aware comparisons, a length budget
and the leak and copy checks. The `harder` world has noisier trials and a
reflection model that errs half the time and harms on its own.

Reported per strategy, over seeds: the held-out test gain (true test fitness of
the final choice minus the seed's, noise-free) and the trials needed until the
mean true test fitness of its current choice reaches the naive loop's mean final
fitness; both with bootstrap 95% intervals over seeds.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np

from cellprompt.evolve.api import run_evolution, start_evolution
from cellprompt.evolve.context import EvolveEvent
from cellprompt.evolve.evidence import evidence_texts
from cellprompt.evolve.reflection import Reflector, extract_prompt
from cellprompt.evolve.schema import EvolveConfig
from cellprompt.evolve.simulation.reflection_model import SimReflectionModel
from cellprompt.evolve.simulation.rules import SEED_PROMPT
from cellprompt.evolve.simulation.world import SimEvaluator, SimWorld

OBJECTIVE = "Analyse single-cell RNA-seq datasets correctly and answer the question in the requested format."
MAX_WORDS = 300
REFLECTION_TOKENS = 16000
STRATEGIES = ("naive", "iterative", "gepa")
Curve = list[tuple[int, float]]  # (trials used, true test fitness of the current choice), a step function


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    world: dict[str, Any] = field(default_factory=dict)  # SimWorld fields
    reflection: dict[str, Any] = field(default_factory=dict)  # SimReflectionModel fields


SCENARIOS = {
    "standard": Scenario("standard", "trials pass 90% / 15% with / without a rule; the reflection model "
                         "errs on a quarter of its fixes"),
    "harder": Scenario("harder", "noisier trials (80% / 25%); the reflection model errs on half its fixes, "
                       "and on 20% of its rewrites adds harmful advice or drops a rule that works",
                       world={"p_hit": 0.8, "p_miss": 0.25},
                       reflection={"error_rate": 0.5, "harm_rate": 0.2, "copy_rate": 0.15}),
}


def naive_loop(world: SimWorld, reflection: SimReflectionModel, budget: int) -> Curve:
    """The original loop (one trial per training task, keep the last rewrite) with the strategies'
    request: `Reflector.request` over `evidence_texts` of its trials."""
    evaluator = SimEvaluator(world)
    reflector = Reflector(reflection, objective=OBJECTIVE, max_words=MAX_WORDS, copy_words=12,
                          forbidden=lambda: [])
    train, test = world.split("train"), world.split("test")
    current, used = SEED_PROMPT, 0
    curve = [(0, world.quality(current, test))]
    while used + len(train) <= budget:
        records = evaluator.evaluate(current, train, 1, first_replicate=used)
        used += len(train)
        request = reflector.request(current, evidence_texts([(r, None) for r in records], 0.0))
        reply = reflection.complete(request, max_tokens=REFLECTION_TOKENS)
        current = extract_prompt(reply.message.content) or current
        curve.append((used, world.quality(current, test)))
    return curve


def strategy_curve(strategy: str, world: SimWorld, reflection: SimReflectionModel, budget: int,
                   seed: int, out: Path) -> Curve:
    """A real evolution in the simulated world; the curve follows its best-so-far choice."""
    test = world.split("test")
    config = EvolveConfig(
        evolution_id=f"{strategy}-{seed}", objective=OBJECTIVE, seed_prompt=SEED_PROMPT,
        train_tasks=world.split("train"), val_tasks=world.split("val"), model="sim:agent",
        reflection_model="sim:reflection", strategy=strategy, budget_trials=budget,
        max_prompt_words=MAX_WORDS, seed=seed)
    folder = start_evolution(config, out)
    curve = [(0, world.quality(SEED_PROMPT, test))]

    def on_event(event: EvolveEvent) -> None:
        if event.best_text is not None:
            curve.append((event.trials_used, world.quality(event.best_text, test)))

    run_evolution(folder, SimEvaluator(world), reflection, on_event=on_event)
    best = (folder.path / "best_prompt.txt").read_text(encoding="utf-8")
    curve.append((max(t for t, _ in curve), world.quality(best, test)))
    return curve


def one_seed(scenario: Scenario, seed: int, budget: int) -> dict[str, Curve]:
    """Every strategy on one seed's world, each with its own reflection model seeded alike."""
    world = SimWorld(seed=seed, **scenario.world)
    shm = Path("/dev/shm")  # the run store fsyncs every line: a RAM disk keeps the benchmark fast
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        return {
            name: naive_loop(world, SimReflectionModel(seed, **scenario.reflection), budget)
            if name == "naive"
            else strategy_curve(name, world, SimReflectionModel(seed, **scenario.reflection), budget,
                                seed, Path(tmp))
            for name in STRATEGIES
        }


def at(curve: Curve, t: int) -> float:
    """The fitness of the choice once `t` trials were used."""
    value = curve[0][1]
    for used, fit in curve:
        if used <= t:
            value = fit
    return value


@dataclass
class Figures:
    """One strategy's figures in one world: means and bootstrap 95% intervals over seeds."""

    name: str
    gain: float
    gain_ci: tuple[float, float]
    trials_used: float
    reach: float  # trials until the mean curve reaches the naive loop's mean final fitness (inf: never)
    reach_ci: tuple[float, float]
    share: float  # reach / the naive loop's trials
    share_ci: tuple[float, float]
    peak_share: float  # the same for the naive loop's best mean fitness along its path (a stricter bar)
    peak_share_ci: tuple[float, float]
    grid: list[float]  # mean fitness at grid points


def _reach(means: np.ndarray, target: np.ndarray) -> np.ndarray:
    """First t (column) where each row reaches its target; inf where it never does."""
    hit = means >= target[:, None] - 1e-12
    return np.where(hit.any(axis=1), hit.argmax(axis=1), np.inf)


def _ci(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of the bootstrap rows (row 0 is the data itself)."""
    rows = values[1:]  # no interpolation: an interval may end at inf (never reached)
    return float(np.percentile(rows, 2.5, method="lower")), float(np.percentile(rows, 97.5, method="higher"))


def summarise(curves: dict[str, list[Curve]], budget: int, *, resamples: int = 2000,
              seed: int = 0) -> list[Figures]:
    names = list(curves)
    steps = np.arange(budget + 1)
    fit = {n: np.array([[at(c, int(t)) for t in steps] for c in curves[n]]) for n in names}
    start = np.array([c[0][1] for c in curves["naive"]])
    n_seeds = len(start)
    naive_trials = float(fmean(c[-1][0] for c in curves["naive"]))
    rng = np.random.default_rng(seed)
    idx = np.vstack([np.arange(n_seeds), rng.integers(0, n_seeds, (resamples, n_seeds))])  # row 0: data
    naive_means = fit["naive"][idx].mean(axis=1)
    target, peak = naive_means[:, -1], naive_means.max(axis=1)
    grid = list(range(0, budget + 1, max(1, budget // 10)))
    out: list[Figures] = []
    for n in names:
        final = np.array([c[-1][1] for c in curves[n]])
        gains = (final - start)[idx].mean(axis=1)
        means = fit[n][idx].mean(axis=1)
        # the naive loop needs all its trials to reach its own final fitness, by definition
        reach = np.full(len(idx), naive_trials) if n == "naive" else _reach(means, target)
        to_peak = _reach(means, peak) / naive_trials
        out.append(Figures(
            name=n, gain=float(gains[0]), gain_ci=_ci(gains), trials_used=fmean(c[-1][0] for c in curves[n]),
            reach=float(reach[0]), reach_ci=_ci(reach), share=float(reach[0]) / naive_trials,
            share_ci=_ci(reach / naive_trials), peak_share=float(to_peak[0]), peak_share_ci=_ci(to_peak),
            grid=[float(fit[n][:, t].mean()) for t in grid]))
    return out


def run_scenario(scenario: Scenario, seeds: int, budget: int, jobs: int = 2) -> dict[str, list[Curve]]:
    """Every strategy on `seeds` worlds, seeds spread over `jobs` processes."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        per_seed = list(pool.map(one_seed, [scenario] * seeds, range(seeds), [budget] * seeds))
    return {n: [s[n] for s in per_seed] for n in STRATEGIES}
