"""Prompt evolution: strategies (`iterative`, `gepa`) that improve a system prompt from graded trials.

Strategies see an `Evaluator` and a reflection `ChatModel` only; the runner-backed
evaluator runs real agents, simulated ones drive tests and `benchmarks/evolution_sim.py`.
"""

from cellprompt.evolve.api import STRATEGIES, compare_on_test, run_evolution, start_evolution
from cellprompt.evolve.budget import BudgetPlan, plan_budget, preflight
from cellprompt.evolve.checks import copied_spans, word_count
from cellprompt.evolve.context import EvolveEvent
from cellprompt.evolve.evaluator import Evaluator, Judge
from cellprompt.evolve.folder import EvolutionFolder, new_evolution_id, text_id
from cellprompt.evolve.report import html_section, plot_progress
from cellprompt.evolve.schema import CandidateRecord, EvolveConfig, EvolveSummary, TestComparison

__all__ = [
    "STRATEGIES",
    "BudgetPlan",
    "CandidateRecord",
    "Evaluator",
    "EvolutionFolder",
    "EvolveConfig",
    "EvolveEvent",
    "EvolveSummary",
    "Judge",
    "TestComparison",
    "compare_on_test",
    "copied_spans",
    "html_section",
    "new_evolution_id",
    "plan_budget",
    "plot_progress",
    "preflight",
    "run_evolution",
    "start_evolution",
    "text_id",
    "word_count",
]
