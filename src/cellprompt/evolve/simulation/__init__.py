"""A simulated prompt-evolution world whose true prompt quality is known, for tests and benchmarks.

Only the agent trial (`world.SimEvaluator`) and the reflection model
(`reflection_model.SimReflectionModel`) are simulated; everything else
(strategies, trial bank, checks, statistics, gepa) is the real code.
`rules` holds the catalogue a prompt is scored by; `benchmark` the naive loop,
the harder world and the measurements `benchmarks/evolution_sim.py` prints.
"""

from cellprompt.evolve.simulation.reflection_model import SimReflectionModel
from cellprompt.evolve.simulation.rules import DECOY_RULES, SEED_PROMPT, USEFUL_RULES
from cellprompt.evolve.simulation.world import SimEvaluator, SimWorld

__all__ = ["DECOY_RULES", "SEED_PROMPT", "USEFUL_RULES", "SimEvaluator", "SimReflectionModel", "SimWorld"]
