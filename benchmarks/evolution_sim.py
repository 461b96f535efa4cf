"""Prompt evolution in a simulated world where a prompt's true quality is known (no LLM involved).

Drives the real `iterative` and `gepa` strategies (only the agent trial and the
reflection model are simulated, see `cellprompt.evolve.simulation`) and a naive
loop in the style of the original `prompt_evolver.py` (run the current prompt
once per training task, rewrite from the first 3,000 characters of the
conversation with a 500-token cap, keep the last rewrite). Prints, averaged
over seeds, the true test fitness of each strategy's current choice against
trials used, and how many trials each needs to reach the naive loop's final
fitness.

    .venv/bin/python benchmarks/evolution_sim.py [--seeds 10] [--budget 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import fmean

from cellprompt.evolve import EvolveConfig, EvolveEvent, run_evolution, start_evolution
from cellprompt.evolve.reflection import OPEN, extract_prompt
from cellprompt.evolve.simulation import SEED_PROMPT, SimEvaluator, SimReflectionModel, SimWorld
from cellprompt.llm.base import Message

OBJECTIVE = "Analyse single-cell RNA-seq datasets correctly and answer the question in the requested format."
NAIVE_CHARS = 3000
NAIVE_TOKENS = 500


def naive_loop(world: SimWorld, budget: int, seed: int) -> list[tuple[int, float]]:
    """The original loop: one run per training task, rewrite from a clipped transcript, keep the last."""
    evaluator, model = SimEvaluator(world), SimReflectionModel(seed)
    train, test = world.split("train"), world.split("test")
    current, used = SEED_PROMPT, 0
    curve = [(0, world.quality(current, test))]
    while used + len(train) <= budget:
        records = evaluator.evaluate(current, train, 1, first_replicate=used)
        used += len(train)
        grade = fmean(r.score or 0.0 for r in records)
        # the conversation: the prompt, the task, the agent's code; the grade is only a number
        transcript = "\n\n".join(
            f"system: {current}\nuser: {r.first_message}\nassistant:\n"
            + "\n".join(c.code for c in r.code_cells)
            for r in records
        )
        request = (
            f"Objective: {OBJECTIVE}\n\nPrevious prompt:\n{OPEN}\n{current}\n</prompt>\n\n"
            f"Conversation:\n{transcript[:NAIVE_CHARS]}\n\nGrade: {grade:.2f}\n\n"
            "Rewrite the prompt to get a better grade."
        )
        reply = model.complete([Message(role="user", content=request)], max_tokens=NAIVE_TOKENS)
        content = reply.message.content
        current = extract_prompt(content) or content.split(OPEN, 1)[-1].strip()
        curve.append((used, world.quality(current, test)))
    return curve


def strategy_curve(
    strategy: str, world: SimWorld, budget: int, seed: int, out: Path, replicates: int
) -> list[tuple[int, float]]:
    test = world.split("test")
    cfg = EvolveConfig(
        evolution_id=f"{strategy}-{seed}",
        objective=OBJECTIVE,
        seed_prompt=SEED_PROMPT,
        train_tasks=world.split("train"),
        val_tasks=world.split("val"),
        model="sim:agent",
        reflection_model="sim:reflection",
        strategy=strategy,
        budget_trials=budget,
        replicates=replicates,
        max_prompt_words=300,
        seed=seed,
    )
    folder = start_evolution(cfg, out)
    curve = [(0, world.quality(SEED_PROMPT, test))]

    def on_event(event: EvolveEvent) -> None:
        if event.best_text is not None:
            curve.append((event.trials_used, world.quality(event.best_text, test)))

    summary = run_evolution(folder, SimEvaluator(world), SimReflectionModel(seed), on_event=on_event)
    best = (folder.path / "best_prompt.txt").read_text(encoding="utf-8")
    curve.append((max(t for t, _ in curve), world.quality(best, test)))
    assert summary.best_id
    return curve


def at(curve: list[tuple[int, float]], t: int) -> float:
    """The fitness of the strategy's choice once `t` trials were used (a step function)."""
    value = curve[0][1]
    for used, fit in curve:
        if used <= t:
            value = fit
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--replicates", type=int, default=1)
    args = parser.parse_args()
    names = ("naive", "iterative", "gepa")
    curves: dict[str, list[list[tuple[int, float]]]] = {n: [] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            world = SimWorld(seed=seed)
            for name in names:
                start = time.perf_counter()
                if name == "naive":
                    curves[name].append(naive_loop(world, args.budget, seed))
                else:
                    curves[name].append(
                        strategy_curve(name, world, args.budget, seed, Path(tmp), args.replicates)
                    )
                seconds[name] += time.perf_counter() - start
    grid = list(range(0, args.budget + 1, max(1, args.budget // 10)))
    mean_at = {n: [fmean(at(c, t) for c in curves[n]) for t in grid] for n in names}
    print(
        f"true test fitness (mean of {args.seeds} seeds) against trials used; budget {args.budget}, "
        f"replicates {args.replicates}"
    )
    print("trials    " + "".join(f"{n:>11}" for n in names))
    for i, t in enumerate(grid):
        print(f"{t:>6}    " + "".join(f"{mean_at[n][i]:>11.3f}" for n in names))
    target = mean_at["naive"][-1]
    print(f"\nnaive loop's final fitness: {target:.3f}")
    for name in names:
        reach = next(
            (t for t in range(args.budget + 1) if fmean(at(c, t) for c in curves[name]) >= target), None
        )
        share = f"{reach / args.budget:.0%} of the budget" if reach is not None else "never"
        print(
            f"{name:>10}: reaches it after {reach if reach is not None else '-'} trials ({share}); "
            f"final {mean_at[name][-1]:.3f}; {seconds[name]:.1f} s"
        )


if __name__ == "__main__":
    main()
