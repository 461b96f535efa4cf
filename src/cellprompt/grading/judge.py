"""The LLM judge: a rubric-scored, structured verdict on one trial, sampled N times.

The original evaluator asked for one holistic grade, hid the system prompt and
turned every failure into -1. Here a verdict is per-criterion scores plus a grade,
validated against a pydantic schema; a reply that does not validate is retried and,
if it never does, recorded as a failed judgement with its reason so that
statistics can leave it out instead of averaging a fake number in.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from cellprompt.errors import GradingError
from cellprompt.grading.judge_input import (  # the helpers are re-exported: judge's public API
    MAX_FIGURES,
    MAX_OPEN_FIGURES,
    JudgedTask,
    figure_paths,
    figures_b64,
    is_open,
    output_text,
    strip_ansi,
    transcript,
    truncate,
    user_message,
)
from cellprompt.llm.base import ChatModel, Message, Usage
from cellprompt.llm.identity import model_identity
from cellprompt.records.run import Evaluation, JudgeCriterion, JudgeSample, TrialRecord

__all__ = [
    "DEFAULT_CRITERIA",
    "OPEN_CRITERIA",
    "JudgeVerdict",
    "JudgedTask",
    "Rubric",
    "default_judge",
    "figure_paths",
    "judge_trial",
    "load_rubric",
    "output_text",
    "parse_verdict",
    "provider_family",
    "same_family",
    "strip_ansi",
    "transcript",
    "truncate",
]

DEFAULT_CRITERIA: dict[str, str] = {
    "correctness": "Is the submitted answer right, and does the analysis support it?",
    "efficiency": "Did the agent reach the answer without wasted steps, repeated errors or needless code?",
    "interpretation": "Are results interpreted soundly in biological and statistical terms?",
    "planning": "Did the agent plan the analysis sensibly and adapt when something failed?",
    "clarity": "Is the code and the written explanation clear and easy to follow?",
    "overall_skill": "Overall, how skilled is this analysis compared with an expert bioinformatician?",
}

# The same six names for open analyses; what "correct" means changes when nothing is withheld.
OPEN_CRITERIA: dict[str, str] = {
    "correctness": "Are the methods right for this dataset, and the conclusions supported by the outputs?",
    "efficiency": "Did the agent progress without wasted steps, repeated errors or needless code?",
    "interpretation": "Are clusters, markers and findings interpreted soundly in biological terms?",
    "planning": "Was the analysis planned as a coherent whole (QC to findings) and adapted when needed?",
    "clarity": "Are the code, the figures and the final report clear and easy to follow?",
    "overall_skill": "Overall, how skilled is this analysis compared with an expert bioinformatician?",
}
DISAGREEMENT_POINTS = 20.0  # samples whose grades span more than this are flagged
DEFAULT_JUDGES = {"openai": "anthropic:claude-sonnet-4-5", "anthropic": "openai:gpt-4o"}

MAX_ATTEMPTS = 3


class Rubric(BaseModel):
    """The criteria the judge scores (0-10 each) and free-text extra instructions."""

    criteria: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CRITERIA))
    extra: str = ""


class _Criterion(BaseModel):
    name: str
    score: float = Field(ge=0, le=10)
    comment: str = ""


class JudgeVerdict(BaseModel):
    """The structured reply asked of the judge model; also its JSON schema."""

    criteria: list[_Criterion]
    grade: float = Field(ge=0, le=100)
    comments: str

    @field_validator("criteria")
    @classmethod
    def _unique(cls, value: list[_Criterion]) -> list[_Criterion]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("criterion names repeat")
        return value


def load_rubric(path: Path) -> Rubric:
    """A YAML/JSON file `{criteria: {name: description}, extra: str}` replaces the criteria;
    any other file is extra instructions added to the default criteria."""
    if not path.is_file():
        raise GradingError(f"rubric file {path} does not exist: pass an existing YAML or text file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() not in {".yaml", ".yml", ".json"}:
        return Rubric(extra=text.strip())
    try:
        data = yaml.safe_load(text)
        return Rubric.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise GradingError(
            f"rubric file {path} is not valid: expected "
            f"{{criteria: {{name: description}}, extra: text}} ({exc})"
        ) from exc


def provider_family(model_spec: str, base_url: str | None = None) -> str | None:
    """The vendor behind a model, for the self-preference warning: from its name when it says,
    else its provider on the provider's own API; None for offline models and for unnamed models
    on another server (speaking OpenAI's protocol does not make a model OpenAI's)."""
    return model_identity(model_spec, base_url).family


def default_judge(agent_models: list[str]) -> str:
    """A judge from another provider family than the agents, so it does not grade its own kind.

    With agents of both families (or none, e.g. `reference`) Anthropic's judge is the default
    unless only OpenAI agents are absent; `same_family` then says which agents share it.
    """
    families = {provider_family(m) for m in agent_models} - {None}
    if families == {"anthropic"}:
        return DEFAULT_JUDGES["anthropic"]
    return DEFAULT_JUDGES["openai"]


def same_family(judge_spec: str, agent_models: list[str], *, judge_url: str | None = None,
                agent_urls: Mapping[str, str | None] | None = None) -> list[str]:
    """The agent models a judge may favour: itself (same name at the same server) or its family.

    `judge_url` and `agent_urls` (per agent model) are the servers they are asked at.
    """
    judge = model_identity(judge_spec, judge_url)
    urls = agent_urls or {}
    return sorted({m for m in agent_models if judge.shares_family(model_identity(m, urls.get(m)))})


def _system_message(rubric: Rubric, open_analysis: bool = False) -> str:
    lines = "\n".join(f"- {name}: {desc}" for name, desc in rubric.criteria.items())
    extra = f"\nAdditional criteria for this task:\n{rubric.extra}\n" if rubric.extra else ""
    kind = (
        "This is an open analysis: there is no withheld answer. Grade the analysis, its figures and "
        "its final report on their merits.\n"
        if open_analysis
        else ""
    )
    return (
        "You are an expert bioinformatician grading an AI agent's single-cell RNA-seq analysis.\n"
        f"{kind}"
        "Score each criterion from 0 (very poor) to 10 (excellent), then give an overall grade from "
        "0 to 100 and comments that justify it.\n"
        f"Criteria:\n{lines}\n{extra}\n"
        "Reply with JSON only, matching this shape: "
        '{"criteria": [{"name": str, "score": number, "comment": str}], "grade": number, "comments": str}. '
        f"Include every criterion by name: {', '.join(rubric.criteria)}."
    )


def parse_verdict(text: str, criteria: list[str]) -> JudgeVerdict:
    """The JSON of a reply (bare, fenced or embedded in prose), validated; ValueError says why not."""
    candidates = [text.strip()]
    candidates += re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    data: Any = None
    for candidate in candidates:
        try:
            data = json.loads(candidate)
            break
        except ValueError:
            continue
    if data is None:
        raise ValueError(f"reply is not JSON: {truncate(text.strip(), 200)!r}")
    try:
        verdict = JudgeVerdict.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"reply does not match the verdict schema: {first['loc']} {first['msg']}") from exc
    missing = [name for name in criteria if name not in {c.name for c in verdict.criteria}]
    if missing:
        raise ValueError(f"reply misses criteria: {', '.join(missing)}")
    return verdict


def _one_sample(
    model: ChatModel, messages: list[Message], criteria: list[str], temperature: float | None
) -> tuple[JudgeSample | None, Usage, str | None]:
    usage = Usage()
    reason: str | None = None
    schema = JudgeVerdict.model_json_schema()
    history = list(messages)
    for _ in range(MAX_ATTEMPTS):
        reply = model.complete(history, max_tokens=2000, temperature=temperature, response_schema=schema)
        usage = usage + reply.usage
        text = reply.message.content
        if not text and reply.message.tool_calls:
            call = reply.message.tool_calls[0]
            text = json.dumps(call.arguments) if call.arguments is not None else call.raw_arguments
        try:
            verdict = parse_verdict(text, criteria)
        except ValueError as exc:
            reason = str(exc)
            history = [
                *messages,
                reply.message,
                Message(
                    role="user",
                    content=f"Your reply was rejected: {reason}. Reply again with the JSON object only.",
                ),
            ]
            continue
        sample = JudgeSample(
            criteria=[
                JudgeCriterion(name=c.name, score=c.score, comment=c.comment) for c in verdict.criteria
            ],
            grade=verdict.grade,
            comments=verdict.comments,
        )
        return sample, usage, None
    return None, usage, f"no valid verdict after {MAX_ATTEMPTS} attempts; last: {reason}"


def judge_trial(
    record: TrialRecord,
    task: JudgedTask | None,
    model: ChatModel,
    *,
    samples: int = 1,
    rubric: Rubric | None = None,
    show_system_prompt: bool = True,
    include_figures: bool | None = None,
    run_dir: Path | None = None,
    temperature: float | None = None,
) -> Evaluation:
    """Judge one trial `samples` times; never raises for a bad reply (the Evaluation says why).

    `temperature` None keeps the provider's default: it samples, so `samples` > 1 measures the
    judge's spread, and newer APIs that refuse the parameter still work. `include_figures`
    None shows the figures of open analyses only (to a judge that accepts images).
    """
    if samples < 1:
        raise GradingError(f"--samples must be at least 1, got {samples}")
    open_analysis = is_open(record, task)
    rubric = rubric.model_copy(deep=True) if rubric else Rubric(
        criteria=dict(OPEN_CRITERIA if open_analysis else DEFAULT_CRITERIA))
    if task is not None and task.rubric:
        rubric.extra = "\n".join(filter(None, [rubric.extra, task.rubric]))
    criteria = list(rubric.criteria)
    if include_figures is None:  # an open analysis is argued with its figures
        include_figures = open_analysis
    limit = MAX_OPEN_FIGURES if open_analysis else MAX_FIGURES
    images = figures_b64(record, run_dir, limit) if include_figures and model.supports_images else []
    user = user_message(record, task, show_system_prompt)
    if images:
        user += f"\n\n## Figures\n{len(images)} figure(s) of the analysis are attached, in order."
    messages = [
        Message(role="system", content=_system_message(rubric, open_analysis)),
        Message(role="user", content=user, images=images),
    ]
    total = Usage()
    done: list[JudgeSample] = []
    failures: list[str] = []
    for _ in range(samples):
        try:
            sample, usage, failure = _one_sample(model, messages, criteria, temperature)
        except Exception as exc:  # a provider failure is one failed sample, not a crashed evaluation
            sample, usage, failure = None, Usage(), f"{type(exc).__name__}: {exc}"
        total = total + usage
        if sample is not None:
            done.append(sample)
        if failure:
            failures.append(failure)
    grades = [s.grade for s in done]
    spread = max(grades) - min(grades) if grades else None
    return Evaluation(
        trial_id=record.trial_id,
        judge_model=model.spec,
        ok=bool(done),
        error="; ".join(failures) or None,
        samples=done,
        grade_mean=statistics.fmean(grades) if grades else None,
        grade_sd=statistics.stdev(grades) if len(grades) > 1 else (0.0 if grades else None),
        grade_range=spread,
        disagreement=spread is not None and spread > DISAGREEMENT_POINTS,
        figures_shown=len(images),
        usage=total,
    )
