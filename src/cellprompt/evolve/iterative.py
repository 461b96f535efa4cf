"""The `iterative` strategy: the original rewrite loop, done right.

One incumbent. Each round the reflection model rewrites it from the full
evidence of its training trials (and a list of rewrites that already failed).
A candidate is first measured on the training tasks — a cheap gate: it must do
better there at all — then on the validation tasks, where the incumbent is
measured again with fresh replicates. It replaces the incumbent only when its
paired advantage over the same tasks exceeds the replicate noise, so a lucky
rollout does not become the champion, and the incumbent is always the best
prompt seen on validation.
"""

from __future__ import annotations

from cellprompt.evolve.checks import text_key
from cellprompt.evolve.context import EvolveContext, StrategyOutcome, describe_change
from cellprompt.evolve.folder import text_id
from cellprompt.evolve.stats import mean_of_task_means

MAX_BARREN_ROUNDS = 4  # consecutive reflections that yield nothing to measure
FAILED_SHOWN = 6


def run_iterative(ctx: EvolveContext) -> StrategyOutcome:
    cfg = ctx.config
    r = cfg.replicates
    train, val = cfg.train_tasks, cfg.validation_tasks
    separate_val = set(val) != set(train)

    inc = cfg.seed_prompt
    seed_id = inc_id = text_id(inc)
    inc_train = ctx.measure(inc, train)
    seed_on_val = ctx.measure(inc, val) if separate_val else inc_train
    inc_val_scores = {t: list(s) for t, s in seed_on_val.task_scores.items()}
    inc_reps = r  # replicates of the incumbent measured on validation so far
    seed_val = mean_of_task_means(inc_val_scores)
    ctx.set_best(inc_id, seed_val)
    ctx.log(inc, verdict="evaluated", split="train", measured=inc_train, origin="seed", reason="seed prompt")
    ctx.log(inc, verdict="accepted", split="val", measured=seed_on_val, origin="seed", reason="seed prompt")

    failed: list[str] = []
    if all(s and min(s) >= 1.0 for s in inc_train.task_scores.values()) and inc_train.unscored == 0:
        return StrategyOutcome(seed_id=seed_id, best_text=inc, best_val=seed_val, seed_val=seed_val,
                               stop_reason="the seed prompt scores 1.000 on every training trial: "
                               "no failure to learn from")
    seen = {text_key(inc)}  # whitespace-normalised: a reflowed prompt is not a new candidate
    barren = 0
    reflections = 0
    while barren < MAX_BARREN_ROUNDS and ctx.can_afford(ctx.plan.per_proposal):
        if cfg.max_proposals is not None and reflections >= cfg.max_proposals:
            break  # `--iterations`: as many rewrites as asked for, however cheap they were
        reflections += 1
        proposal = ctx.reflector.propose(inc, ctx.evidence(inc_train), failed_attempts=failed[-FAILED_SHOWN:])
        if proposal.text is None or text_key(proposal.text) in seen:
            barren += 1
            why = "; ".join(proposal.hints) if proposal.text is None else "repeats an earlier candidate"
            # the next request differs from this one, so a deterministic (or cached) model moves on
            failed.append(f"{describe_change(inc, proposal.text or proposal.rejected or '')} ({why})")
            ctx.log_refused(proposal, inc_id)
            continue
        ctx.log_refused(proposal, inc_id)
        barren = 0
        cand, cand_id = proposal.text, text_id(proposal.text)
        seen.add(text_key(cand))
        cand_train = ctx.measure(cand, train)
        gate = ctx.noise.compare(cand_train.task_scores, inc_train.task_scores)
        if separate_val and gate.loses(cfg.z_noise):  # worse beyond the noise, not merely below
            failed.append(f"{describe_change(inc, cand)} (training score {gate.delta:+.2f})")
            ctx.log(
                cand,
                verdict="rejected",
                split="train",
                measured=cand_train,
                parents=[inc_id],
                reason=f"worse on training tasks: {gate.delta:+.3f} beyond the noise "
                f"({cfg.z_noise} × {gate.se:.3f})",
                reflection_usage=proposal.usage,
                gate=gate.evidence(cfg.z_noise),
            )
            continue
        ctx.log(
            cand,
            verdict="evaluated",
            split="train",
            measured=cand_train,
            parents=[inc_id],
            reason=f"training gate passed: {gate.delta:+.3f} ± {gate.se:.3f}",
            reflection_usage=proposal.usage,
            gate=gate.evidence(cfg.z_noise),
        )
        cand_val = ctx.measure(cand, val) if separate_val else cand_train
        again = ctx.measure(inc, val, first_replicate=inc_reps)
        inc_reps += r
        for t, s in again.task_scores.items():
            inc_val_scores[t].extend(s)
        ctx.set_best(inc_id, mean_of_task_means(inc_val_scores))
        ctx.log(inc, verdict="evaluated", split="val", measured=again, reason="incumbent re-measured")
        cand_val_scores = {t: list(s) for t, s in cand_val.task_scores.items()}
        cmp = ctx.noise.compare(cand_val_scores, inc_val_scores)
        if cmp.delta > 0 and not cmp.wins(cfg.z_noise) and ctx.can_afford(2 * len(val) * r):
            # promising but within the noise: a second look at both, with fresh replicates
            more = ctx.measure(cand, val, first_replicate=r)
            again = ctx.measure(inc, val, first_replicate=inc_reps)
            inc_reps += r
            for t in val:
                cand_val_scores[t].extend(more.task_scores[t])
                inc_val_scores[t].extend(again.task_scores[t])
            ctx.log(
                cand,
                verdict="evaluated",
                split="val",
                measured=more,
                parents=[inc_id],
                reason=f"second look: {cmp.delta:+.3f} within the noise ({cmp.se:.3f})",
            )
            cmp = ctx.noise.compare(cand_val_scores, inc_val_scores)
        if cmp.wins(cfg.z_noise):
            parent = inc_id
            inc, inc_id, inc_train = cand, cand_id, cand_train
            inc_val_scores = cand_val_scores
            inc_reps = len(next(iter(cand_val_scores.values())))
            ctx.set_best(inc_id, mean_of_task_means(inc_val_scores))
            failed.clear()
            ctx.log(
                cand,
                verdict="accepted",
                split="val",
                measured=cand_val,
                parents=[parent],
                reason=f"validation {cmp.delta:+.3f} ± {cmp.se:.3f}",
                gate=cmp.evidence(cfg.z_noise),
            )
        else:
            failed.append(f"{describe_change(inc, cand)} (validation {cmp.delta:+.2f} ± {cmp.se:.2f})")
            ctx.log(
                cand,
                verdict="rejected",
                split="val",
                measured=cand_val,
                parents=[inc_id],
                reason=f"validation {cmp.delta:+.3f} does not clear the noise ({cfg.z_noise} × {cmp.se:.3f})",
                gate=cmp.evidence(cfg.z_noise),
            )
    return StrategyOutcome(seed_id=seed_id, best_text=inc, best_val=ctx.best_val, seed_val=seed_val,
                           stop_reason=_stop_reason(ctx, barren, reflections, failed))


def _stop_reason(ctx: EvolveContext, barren: int, reflections: int, failed: list[str]) -> str:
    """Why the loop above ended, in the terms a user can act on."""
    cfg = ctx.config
    if barren >= MAX_BARREN_ROUNDS:
        last = failed[-1] if failed else ""
        return (f"{barren} reflections in a row gave nothing new to measure (refused or repeated)"
                + (f"; last: {last[:200]}" if last else ""))
    if cfg.max_proposals is not None and reflections >= cfg.max_proposals:
        return f"made the {cfg.max_proposals} reflection(s) asked for (--iterations)"
    if cfg.max_cost_usd is not None and ctx.spent_usd() >= cfg.max_cost_usd:
        return f"the cost cap of ${cfg.max_cost_usd:.2f} is reached (${ctx.spent_usd():.2f} spent)"
    return (f"the trial budget is spent: {ctx.bank.trials_used} of {ctx.plan.search} search trials used, "
            f"a proposal needs {ctx.plan.per_proposal}")
