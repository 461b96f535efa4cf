"""How many trials a strategy needs, and the preflight that refuses a budget too small to matter.

Users of prompt optimisers report budgets that end before a single real
proposal was made; the cost of a proposal in trials follows from the number of
tasks and replicates, so it is checked before anything is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from cellprompt.errors import EvolveError
from cellprompt.evolve.schema import EvolveConfig

MIN_PROPOSALS = 3
CONFIRM_TOP = 3  # gepa: validation leaders re-measured before the best is named


@dataclass(frozen=True)
class BudgetPlan:
    total: int
    seed: int  # trials to measure the seed prompt
    per_proposal: int  # upper bound on trials one proposal can use
    confirm: int  # gepa: re-measuring the validation leaders with fresh replicates
    test: int  # seed and best on the test tasks, reserved from the total

    @property
    def search(self) -> int:
        """Trials the search itself may use: what is left after the final measurements."""
        return self.total - self.confirm - self.test

    @property
    def proposals(self) -> int:
        return max(0, (self.search - self.seed) // self.per_proposal)

    @property
    def minimum_total(self) -> int:
        return self.seed + MIN_PROPOSALS * self.per_proposal + self.confirm + self.test


def plan_budget(config: EvolveConfig) -> BudgetPlan:
    r = config.replicates
    train = len(dict.fromkeys(config.train_tasks))
    val = len(dict.fromkeys(config.validation_tasks))
    separate_val = bool(config.val_tasks) and set(config.val_tasks) != set(config.train_tasks)
    test = 2 * len(dict.fromkeys(config.test_tasks)) * r
    if config.strategy == "iterative":
        # the seed on train (evidence) and validation; a candidate on train (a cheap gate), then on
        # validation together with the incumbent re-measured with fresh replicates
        seed = (train + (val if separate_val else 0)) * r
        per = (train + (val if separate_val else 0) + val) * r
        confirm = 0
    else:
        # gepa: the parent and its child on a minibatch of training tasks, the child on validation
        batch = min(config.minibatch, train)
        seed = val * r
        per = (2 * batch + val) * r
        confirm = CONFIRM_TOP * val * r
    return BudgetPlan(total=config.budget_trials, seed=seed, per_proposal=per, confirm=confirm, test=test)


def budget_for_iterations(config: EvolveConfig, iterations: int) -> int:
    """The trial budget that pays for `iterations` proposals (the original tool counted those),
    each with the iterative strategy's second look at a close call."""
    plan = plan_budget(config)
    r = config.replicates
    second_look = 2 * len(dict.fromkeys(config.validation_tasks)) * r if config.strategy == "iterative" else 0
    return plan.seed + iterations * (plan.per_proposal + second_look) + plan.confirm + plan.test


def preflight(config: EvolveConfig) -> BudgetPlan:
    """The plan, or an EvolveError naming the budget that would allow three proposals
    (or the `--iterations` asked for, when fewer)."""
    plan = plan_budget(config)
    wanted = min(MIN_PROPOSALS, config.max_proposals or MIN_PROPOSALS)
    if plan.proposals < wanted:
        noun = "proposals" if wanted > 1 else "proposal"
        raise EvolveError(
            f"--budget {config.budget_trials} trials is too small for {wanted} {noun} with "
            f"{config.strategy}: the seed needs {plan.seed}, each proposal up to {plan.per_proposal} "
            f"(tasks × {config.replicates} replicate(s)), the final measurements {plan.confirm + plan.test}; "
            f"use --budget {plan.minimum_total} or more, or fewer tasks/replicates"
        )
    return plan
