"""Starting, running and resuming an evolution; the final test-set comparison and output files."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

from cellprompt.errors import EvolveError
from cellprompt.evolve.budget import preflight
from cellprompt.evolve.context import EvolveContext, EvolveEvent, StrategyOutcome
from cellprompt.evolve.evaluator import Evaluator, Judge, TrialBank, recording
from cellprompt.evolve.folder import EvolutionFolder, text_id
from cellprompt.evolve.reflection import Reflector
from cellprompt.evolve.schema import CostSummary, EvolveConfig, EvolveSummary, SplitComparison, TestComparison
from cellprompt.evolve.stats import mean_of_task_means
from cellprompt.llm.base import ChatModel
from cellprompt.registry import Registry

Strategy = Callable[[EvolveContext], StrategyOutcome]
STRATEGIES: Registry[Strategy] = Registry("strategy")


@STRATEGIES.register("iterative")
def _iterative(ctx: EvolveContext) -> StrategyOutcome:
    from cellprompt.evolve.iterative import run_iterative

    return run_iterative(ctx)


@STRATEGIES.register("gepa")
def _gepa(ctx: EvolveContext) -> StrategyOutcome:
    from cellprompt.evolve.gepa_strategy import run_gepa

    return run_gepa(ctx)


def split_warnings(config: EvolveConfig) -> list[str]:
    """What weakens the evidence without being an error: tasks shared by training and validation."""
    out: list[str] = []
    if config.val_tasks:
        both = sorted(set(config.train_tasks) & set(config.val_tasks))
        if both:
            out.append(
                f"task(s) {', '.join(both)} are both training and validation tasks: the reflection "
                "model sees their trials, so validation scores on them are optimistic"
            )
    for name, tasks in (("training", config.train_tasks), ("validation", config.val_tasks),
                        ("test", config.test_tasks)):
        dup = sorted({t for t in tasks if tasks.count(t) > 1})
        if dup:
            out.append(f"{name} task(s) {', '.join(dup)} are listed more than once")
    return out


def start_evolution(config: EvolveConfig, outputs_dir: Path) -> EvolutionFolder:
    """Check the budget, then create the folder; nothing is spent here."""
    if config.strategy not in STRATEGIES:
        raise EvolveError(STRATEGIES.unknown(config.strategy))
    overlap = set(config.test_tasks) & (set(config.train_tasks) | set(config.val_tasks))
    if overlap:
        raise EvolveError(
            f"test task(s) {', '.join(sorted(overlap))} are also used for training or "
            "validation: held-out tasks must be held out"
        )
    preflight(config)
    return EvolutionFolder.create(outputs_dir, config)


def run_evolution(
    folder: EvolutionFolder,
    evaluator: Evaluator,
    reflection_model: ChatModel,
    *,
    judge: Judge | None = None,
    on_event: Callable[[EvolveEvent], None] | None = None,
) -> EvolveSummary:
    """Run (or resume) the evolution in `folder`; Ctrl-C leaves everything finished on disk."""
    config = folder.config()
    plan = preflight(config)
    bank = TrialBank(evaluator, folder, judge=judge, judge_weight=config.judge_weight)
    recorder = recording(reflection_model, folder)
    ctx_ref: list[EvolveContext] = []
    reflector = Reflector(
        recorder,
        objective=config.objective,
        max_words=config.max_prompt_words,
        copy_words=config.copy_span_words,
        forbidden=lambda: ctx_ref[0].forbidden_texts(),
        max_tokens=config.reflection_max_tokens,
        facts=lambda: ctx_ref[0].leak_facts(),
    )
    ctx = EvolveContext(
        config=config,
        folder=folder,
        bank=bank,
        reflection_model=recorder,
        reflector=reflector,
        plan=plan,
        on_event=on_event,
    )
    ctx_ref.append(ctx)
    outcome = STRATEGIES[config.strategy](ctx)
    test = compare_on_test(ctx, outcome) if config.test_tasks else None
    return _finish(ctx, outcome, test)


def compare_on_test(ctx: EvolveContext, outcome: StrategyOutcome) -> TestComparison:
    """The seed and the best prompt on the held-out tasks, same replicates, paired by task."""
    cfg = ctx.config
    seed = ctx.measure(cfg.seed_prompt, cfg.test_tasks)
    best = ctx.measure(outcome.best_text, cfg.test_tasks)
    pairs = [
        fmean(best.task_scores[t]) - fmean(seed.task_scores[t])
        for t in cfg.test_tasks
        if best.task_scores[t] and seed.task_scores[t]  # a task with no scorable trial pairs nothing
    ]
    cmp = ctx.noise.compare(best.task_scores, seed.task_scores)
    delta = fmean(pairs) if pairs else None
    se = None if not pairs or math.isinf(cmp.se) or best.prompt_id == seed.prompt_id else cmp.se
    return TestComparison(
        tasks=list(cfg.test_tasks),
        replicates=cfg.replicates,
        seed=SplitComparison(
            candidate_id=seed.prompt_id,
            task_scores=seed.task_scores,
            mean=mean_of_task_means(seed.task_scores),
        ),
        best=SplitComparison(
            candidate_id=best.prompt_id,
            task_scores=best.task_scores,
            mean=mean_of_task_means(best.task_scores),
        ),
        delta=delta,
        delta_se=se,
    )


def _finish(ctx: EvolveContext, outcome: StrategyOutcome, test: TestComparison | None) -> EvolveSummary:
    from cellprompt.evolve.report import lineage, plot_progress

    folder, cfg = ctx.folder, ctx.config
    agent, judge = ctx.bank.stored_usage()
    best_id = text_id(outcome.best_text)
    summary = EvolveSummary(
        evolution_id=cfg.evolution_id,
        strategy=cfg.strategy,
        status="finished",
        seed_id=outcome.seed_id,
        best_id=best_id,
        best_val=outcome.best_val,
        seed_val=outcome.seed_val,
        candidates=len({r.candidate_id for r in folder.candidates()}),
        cost=CostSummary(
            trials=len(folder.trials()),
            agent=agent,
            reflection=ctx.reflection_model.recorded_usage(),
            judge=judge,
        ),
        test=test,
        stop_reason=outcome.stop_reason,
        warnings=split_warnings(cfg),
    )
    folder.write_text("best_prompt.txt", outcome.best_text)
    if test is not None:
        folder.write_json("test_comparison.json", test)
    folder.write_json("lineage.json", lineage(folder, best_id))
    plot_progress(folder.progress(), folder.path / "progress.png")
    folder.write_json("summary.json", summary)
    return summary
