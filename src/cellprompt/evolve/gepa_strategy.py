"""The `gepa` strategy: the gepa library's reflective evolution with a Pareto frontier over tasks.

gepa drives the search (which candidate to mutate, on which minibatch of
training tasks, whether a child enters the pool, merges of sections from two
lineages); cellprompt supplies the adapter: trials through the evaluator,
scores in [0, 1], the evidence of each trial for reflection, and the proposal
itself through the same `Reflector` as `iterative` (length budget, copy check,
truncation retries). The prompt's markdown `## ` sections are the candidate's
components, so a merge can take the QC section of one lineage and the
clustering section of another. Selection uses validation scores only; at the
end the validation leaders are measured again with fresh replicates, so a
lucky rollout does not name the winner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, cast

from cellprompt.errors import EvolveError
from cellprompt.evolve.budget import CONFIRM_TOP
from cellprompt.evolve.checks import text_key, word_count
from cellprompt.evolve.context import EvolveContext, StrategyOutcome
from cellprompt.evolve.evidence import fitness, render_trial, select_evidence
from cellprompt.evolve.folder import BankedTrial, text_id
from cellprompt.evolve.schema import Origin, Split
from cellprompt.evolve.sections import join_sections, split_sections
from cellprompt.evolve.stats import mean_of_task_means

if TYPE_CHECKING:  # gepa is the optional `evolve` extra
    from gepa.core.adapter import GEPAAdapter
    from gepa.core.callbacks import GEPACallback
    from gepa.core.result import GEPAResult

MAX_IDLE_ITERATIONS = 12  # gepa iterations in a row that ran no new trial


class CellpromptAdapter:
    """gepa's `GEPAAdapter` over cellprompt trials; a data instance is a task ref."""

    def __init__(self, ctx: EvolveContext, names: list[str]) -> None:
        self.ctx = ctx
        self.names = names
        self.parents: dict[str, list[str]] = {}  # child id -> parent ids, from proposals
        self.pool: dict[int, dict[str, str]] = {}  # gepa's candidates by index, as they enter the pool
        self.by_key: dict[str, dict[str, str]] = {}  # whitespace-normalised prompt -> first such candidate

    def prompt(self, candidate: Mapping[str, str]) -> str:
        return join_sections({n: candidate[n] for n in self.names})

    def evaluate(self, batch: list[str], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepa.core.adapter import EvaluationBatch

        ctx = self.ctx
        text = self.prompt(candidate)
        self.by_key.setdefault(text_key(text), dict(candidate))
        m = ctx.measure(text, batch)
        # a task with no scorable trial (outages only) gets the batch's mean, not a fake 0
        known = [fmean(m.task_scores[t]) for t in batch if m.task_scores[t]]
        fill = fmean(known) if known else 0.0
        scores = [fmean(m.task_scores[t]) if m.task_scores[t] else fill for t in batch]
        by_task: dict[str, list[BankedTrial]] = {t: [] for t in batch}
        for b in m.trials:
            by_task[b.task_ref].append(b)
        objective = [self._objectives(by_task[t]) for t in batch]
        val = ctx.config.validation_tasks
        separate = set(val) != set(ctx.config.train_tasks)
        if list(batch) != list(val):  # full validation passes are logged by the callback
            split: Split = "val" if separate and set(batch) <= set(val) else "train"
            cid = text_id(text)
            if text == ctx.config.seed_prompt:
                ctx.log(text, verdict="evaluated", split=split, measured=m, origin="seed")
            elif cid in self.parents:
                ctx.log(
                    text,
                    verdict="evaluated",
                    split=split,
                    measured=m,
                    parents=self.parents[cid],
                    origin="reflection",
                )
            else:  # a merge, evaluated before gepa tells its parents: the pool members it is made of
                ctx.log(
                    text,
                    verdict="evaluated",
                    split=split,
                    measured=m,
                    parents=self._merged_from(candidate),
                    origin="merge",
                )
        return EvaluationBatch(
            outputs=[{"task": t, "scores": m.task_scores[t]} for t in batch],
            scores=scores,
            trajectories=[by_task[t] for t in batch] if capture_traces else None,
            objective_scores=objective,
            num_metric_calls=len(batch) * ctx.config.replicates,
        )

    def _merged_from(self, candidate: Mapping[str, str]) -> list[str]:
        shared = sorted(
            ((sum(candidate[n] == c.get(n) for n in self.names), idx) for idx, c in self.pool.items()),
            reverse=True,
        )
        return [text_id(self.prompt(self.pool[idx])) for count, idx in shared[:2] if count > 0]

    def _objectives(self, trials: list[BankedTrial]) -> dict[str, float]:
        det = fmean(b.record.score or 0.0 for b in trials)
        out = {"grade": det}
        judged = [
            b.evaluation.grade_mean / 100
            for b in trials
            if b.evaluation is not None and b.evaluation.ok and b.evaluation.grade_mean is not None
        ]
        if judged:
            out["judge"] = fmean(judged)
        return out

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        w = self.ctx.bank.judge_weight
        trials = [b for per_task in eval_batch.trajectories or [] for b in per_task]
        chosen = select_evidence(trials, lambda b: fitness(b.record, b.evaluation, w))
        records = [
            {
                "Task": b.record.spec.task_id,
                "Score": round(fitness(b.record, b.evaluation, w), 3),
                "Feedback": render_trial(b.record, b.evaluation, fitness(b.record, b.evaluation, w)),
            }
            for b in chosen
        ]
        return {name: records for name in components_to_update}

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        ctx = self.ctx
        whole = self.prompt(candidate)
        new = dict(candidate)
        for name in components_to_update:
            others = sum(word_count(candidate[n]) for n in self.names if n != name)
            multi = len(self.names) > 1
            proposal = ctx.reflector.propose(
                candidate[name],
                [str(r["Feedback"]) for r in reflective_dataset.get(name, [])],
                section=name if multi else None,
                whole_prompt=whole if multi else None,
                word_budget=max(20, ctx.config.max_prompt_words - others),
            )
            as_whole = (lambda t, n=name: self.prompt({**candidate, n: t})) if multi else None
            ctx.log_refused(proposal, text_id(whole), as_whole)
            if proposal.text is None:
                continue
            text = proposal.text
            heading = candidate[name].splitlines()[0] if candidate[name].startswith("## ") else None
            if heading and not text.startswith("## "):
                text = f"{heading}\n{text}"
            if candidate[name].endswith("\n") and not text.endswith("\n"):
                text += "\n"
            new[name] = text
        # a whitespace-only variant of a known prompt is that prompt: its trials are banked, it costs nothing
        new = dict(self.by_key.get(text_key(self.prompt(new)), new))
        if self.prompt(new) != whole:
            self.parents.setdefault(text_id(self.prompt(new)), [text_id(whole)])
        return new


class _Progress:
    """gepa callback: every full validation pass becomes a line of evolution.jsonl and may move the best."""

    def __init__(self, ctx: EvolveContext, adapter: CellpromptAdapter) -> None:
        self.ctx = ctx
        self.adapter = adapter
        self.by_idx: dict[int, str] = {}

    def on_valset_evaluated(self, event: Mapping[str, Any]) -> None:
        ctx = self.ctx
        text = self.adapter.prompt(event["candidate"])
        self.by_idx[event["candidate_idx"]] = text_id(text)
        self.adapter.pool[event["candidate_idx"]] = dict(event["candidate"])
        m = ctx.measure(text, ctx.config.validation_tasks)  # already banked: free
        score = mean_of_task_means(m.task_scores)
        if ctx.best_val is None or (score is not None and score > ctx.best_val):
            ctx.set_best(text_id(text), score)
        parents = [
            self.by_idx[i] for i in event.get("parent_ids") or [] if i is not None and i in self.by_idx
        ]
        origin: Origin = "seed" if not parents else ("merge" if len(parents) > 1 else "reflection")
        ctx.log(
            text,
            verdict="accepted",
            split="val",
            measured=m,
            parents=parents,
            origin=origin,
            reason="entered the candidate pool",
        )

    def on_merge_attempted(self, event: Mapping[str, Any]) -> None:
        ids = [self.by_idx[i] for i in event.get("parent_ids") or [] if i in self.by_idx]
        if ids:
            self.ctx.log(
                self.adapter.prompt(event["merged_candidate"]),
                verdict="evaluated",
                parents=ids,
                origin="merge",
                reason="merge of two lineages",
            )


class _FileLog:
    """gepa's log lines go to a file in its run_dir; library code never prints."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, message: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(message.rstrip("\n") + "\n")


class _TrialBudgetStopper:
    """Stops gepa before a proposal could overrun the trial budget, or when it stalls.

    gepa skips reflection on minibatches it already scores perfectly, and a
    minibatch it has seen is answered from the trial bank for free: with every
    training task solved it would iterate forever without spending anything.
    """

    def __init__(self, ctx: EvolveContext, patience: int = MAX_IDLE_ITERATIONS) -> None:
        self.ctx = ctx
        self.patience = patience
        self._last = -1
        self._idle = 0
        self.reason = "gepa ended its search"  # replaced by why this stopper ended it

    def __call__(self, gepa_state: object) -> bool:
        used = self.ctx.bank.trials_used
        self._idle = self._idle + 1 if used == self._last else 0
        self._last = used
        ctx = self.ctx
        if self._idle >= self.patience:
            self.reason = (f"{self._idle} gepa iterations in a row ran no new trial (every minibatch solved "
                           "or answered from the trial bank): nothing left to learn from")
            return True
        if not ctx.can_afford(ctx.plan.per_proposal):
            cap = ctx.config.max_cost_usd
            capped = cap is not None and ctx.spent_usd() >= cap
            self.reason = (f"the cost cap of ${cap:.2f} is reached" if capped
                           else f"the trial budget is spent: {used} of {ctx.plan.search} search trials used, "
                           f"a proposal needs {ctx.plan.per_proposal}")
            return True
        return False


def run_gepa(ctx: EvolveContext) -> StrategyOutcome:
    try:
        import gepa
    except ImportError as exc:  # pragma: no cover - gepa is a dependency of the evolve extra
        raise EvolveError(
            "the gepa strategy needs the gepa package: pip install 'cellprompt[evolve]'"
        ) from exc
    cfg = ctx.config
    seed = split_sections(cfg.seed_prompt)
    names = list(seed)
    adapter = CellpromptAdapter(ctx, names)
    run_dir = ctx.folder.gepa_dir
    # resume is a replay, not gepa's own restart: gepa's saved state lags its last trials (a SIGKILL
    # loses the iteration in flight, and its restart may pick another section), while a replay from
    # the start with the same seed asks for the same trials and reflections, all answered from the
    # folder for free, and so takes the same decisions as an uninterrupted run
    (run_dir / "gepa_state.bin").unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "gepa.stop").unlink(missing_ok=True)
    # gepa's protocols are stricter than gepa: it sets no `propose_new_texts` on an adapter, and
    # calls only the hooks a callback defines
    gepa_adapter = cast("GEPAAdapter[str, Any, Any]", adapter)
    progress = cast("GEPACallback", _Progress(ctx, adapter))
    stopper = _TrialBudgetStopper(ctx)
    result: GEPAResult[Any, Any] = gepa.optimize(
        seed_candidate=seed,
        trainset=list(cfg.train_tasks),
        valset=list(cfg.validation_tasks),
        adapter=gepa_adapter,
        candidate_selection_strategy="pareto",
        frontier_type="instance",
        reflection_minibatch_size=min(cfg.minibatch, len(cfg.train_tasks)),
        module_selector="round_robin",
        use_merge=len(names) > 1,
        max_merge_invocations=5,
        merge_val_overlap_floor=1,
        stop_callbacks=[stopper],
        run_dir=str(run_dir),
        callbacks=[progress],
        logger=_FileLog(run_dir / "run_log.txt"),
        track_best_outputs=False,
        display_progress_bar=False,
        seed=cfg.seed,
        raise_on_exception=True,
        skip_perfect_score=True,
    )
    seed_id = text_id(cfg.seed_prompt)
    texts = [adapter.prompt(c) for c in result.candidates]
    seed_val = result.val_aggregate_scores[0] if result.val_aggregate_scores else None
    best_text = _confirm(ctx, texts, list(result.val_aggregate_scores))
    return StrategyOutcome(seed_id=seed_id, best_text=best_text, best_val=ctx.best_val, seed_val=seed_val,
                           stop_reason=stopper.reason)


def _confirm(ctx: EvolveContext, texts: list[str], scores: list[float]) -> str:
    """Measure the validation leaders again with fresh replicates; the best pooled mean wins."""
    cfg = ctx.config
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    leaders: list[str] = []
    for i in order:
        if texts[i] not in leaders:
            leaders.append(texts[i])
    leaders = leaders[:CONFIRM_TOP]
    if len(leaders) < 2:
        return leaders[0] if leaders else cfg.seed_prompt
    val = cfg.validation_tasks
    limit = ctx.plan.search + ctx.plan.confirm
    pooled: dict[str, float | None] = {}
    scores_of: dict[str, dict[str, list[float]]] = {}
    for text in leaders:
        first = ctx.measure(text, val)
        merged = {t: list(s) for t, s in first.task_scores.items()}
        if ctx.bank.trials_used + len(val) * cfg.replicates <= limit:
            again = ctx.measure(text, val, first_replicate=cfg.replicates)
            for t, s in again.task_scores.items():
                merged[t].extend(s)
            ctx.log(text, verdict="evaluated", split="val", measured=again, reason="confirmation re-measure")
        pooled[text] = mean_of_task_means(merged)
        scores_of[text] = merged
    best = max(leaders, key=lambda t: -1.0 if (mean := pooled[t]) is None else mean)
    seed = cfg.seed_prompt
    if best == seed:
        ctx.set_best(text_id(best), pooled[best])
        ctx.log(best, verdict="accepted", split="val", reason="the seed is still the best after confirmation")
        return best
    # the final gate: the winner must beat the seed on validation by more than the replicate noise
    seed_scores = scores_of.get(seed) or ctx.measure(seed, val).task_scores  # banked: free
    cmp = ctx.noise.compare(scores_of[best], seed_scores)
    if not cmp.wins(cfg.z_noise):
        ctx.set_best(text_id(seed), mean_of_task_means(seed_scores))
        ctx.log(best, verdict="rejected", split="val", gate=cmp.evidence(cfg.z_noise),
                reason=f"best leader beats the seed by {cmp.delta:+.3f}, within the noise "
                f"({cfg.z_noise} × {cmp.se:.3f}): the seed is kept")
        return seed
    ctx.set_best(text_id(best), pooled[best])
    ctx.log(best, verdict="accepted", split="val", gate=cmp.evidence(cfg.z_noise),
            reason=f"best after confirmation on fresh replicates: {cmp.delta:+.3f} ± {cmp.se:.3f} "
            "over the seed")
    return best
