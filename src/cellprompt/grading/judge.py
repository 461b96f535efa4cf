"""The LLM judge: a rubric-scored, structured verdict on one trial, sampled N times.

The original evaluator asked for one holistic grade, hid the system prompt and
turned every failure into -1. Here a verdict is per-criterion scores plus a grade,
validated against a pydantic schema; a reply that does not validate is retried and,
if it never does, recorded as a failed judgement with its reason so that
statistics can leave it out instead of averaging a fake number in.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from cellprompt.errors import GradingError
from cellprompt.llm.base import ChatModel, Message, Usage
from cellprompt.runs.schema import Evaluation, ExecutionRecord, JudgeCriterion, JudgeSample, TrialRecord
from cellprompt.runs.store import RunStore
from cellprompt.tasks.spec import Task

DEFAULT_CRITERIA: dict[str, str] = {
    "correctness": "Is the submitted answer right, and does the analysis support it?",
    "efficiency": "Did the agent reach the answer without wasted steps, repeated errors or needless code?",
    "interpretation": "Are results interpreted soundly in biological and statistical terms?",
    "planning": "Did the agent plan the analysis sensibly and adapt when something failed?",
    "clarity": "Is the code and the written explanation clear and easy to follow?",
    "overall_skill": "Overall, how skilled is this analysis compared with an expert bioinformatician?",
}

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_ATTEMPTS = 3
CODE_LIMIT = 3000
OUTPUT_LIMIT = 2000
TEXT_LIMIT = 4000
MAX_FIGURES = 4


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


def provider_family(model_spec: str) -> str | None:
    """The vendor behind a model spec, for the self-preference warning; None for offline models."""
    head, _, name = model_spec.partition(":")
    name = name.lower()
    if head == "anthropic" or "claude" in name:
        return "anthropic"
    if head == "openai":
        for family in ("llama", "qwen", "mistral", "gemini", "gemma", "deepseek", "claude"):
            if family in name:
                return family if family != "claude" else "anthropic"
        return "openai"
    return None


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail: the start says what ran, the end says how it finished."""
    if len(text) <= limit:
        return text
    head = int(limit * 0.6)
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters omitted ...]\n{text[-tail:]}"


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def output_text(output: dict[str, Any]) -> str:
    """A kernel output as plain text, the way a reader of a notebook would see it."""
    kind = output.get("type") or output.get("output_type")
    if kind == "stream":
        return str(output.get("text", ""))
    if kind == "error":
        tb = "\n".join(strip_ansi(line) for line in output.get("traceback", []) or [])
        return tb or f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    data = output.get("data") or {}
    if "text/plain" in data:
        return str(data["text/plain"])
    if any(mime.startswith("image/") for mime in data):
        return "[figure]"
    return ""


def _execution_text(ex: ExecutionRecord) -> str:
    out = "".join(
        output_text(o) if output_text(o).endswith("\n") else output_text(o) + "\n" for o in ex.outputs
    )
    status = "" if ex.final_status == "ok" else f" [{ex.final_status}]"
    return (
        f"```python\n{truncate(ex.code, CODE_LIMIT)}\n```\nOutput{status}:\n"
        f"```\n{truncate(out.strip(), OUTPUT_LIMIT)}\n```"
    )


def transcript(record: TrialRecord) -> str:
    """The conversation as the judge reads it: assistant text, code and truncated outputs."""
    parts: list[str] = []
    for turn in record.turns:
        if turn.assistant_text.strip():
            parts.append(f"### Assistant (turn {turn.index})\n{truncate(turn.assistant_text, TEXT_LIMIT)}")
        parts.extend(_execution_text(ex) for ex in turn.executions)
    return "\n\n".join(parts) or "(the agent produced no turns)"


def _system_message(rubric: Rubric) -> str:
    lines = "\n".join(f"- {name}: {desc}" for name, desc in rubric.criteria.items())
    extra = f"\nAdditional criteria for this task:\n{rubric.extra}\n" if rubric.extra else ""
    return (
        "You are an expert bioinformatician grading an AI agent's single-cell RNA-seq analysis.\n"
        "Score each criterion from 0 (very poor) to 10 (excellent), then give an overall grade from "
        "0 to 100 and comments that justify it.\n"
        f"Criteria:\n{lines}\n{extra}\n"
        "Reply with JSON only, matching this shape: "
        '{"criteria": [{"name": str, "score": number, "comment": str}], "grade": number, "comments": str}. '
        f"Include every criterion by name: {', '.join(rubric.criteria)}."
    )


def _user_message(record: TrialRecord, task: Task | None, show_system_prompt: bool) -> str:
    objective = task.objective if task is not None else record.first_message
    parts = [f"## Task\n{truncate(objective, TEXT_LIMIT)}"]
    if record.first_message and task is not None and record.first_message != task.objective:
        parts.append(f"## First message the agent received\n{truncate(record.first_message, TEXT_LIMIT)}")
    if show_system_prompt:
        parts.append(f"## System prompt given to the agent\n{truncate(record.spec.prompt, TEXT_LIMIT)}")
    parts.append(f"## Conversation\n{transcript(record)}")
    answer = json.dumps(record.answer, indent=1, default=str) if record.answer is not None else "(none)"
    parts.append(f"## Submitted answer\n{truncate(answer, TEXT_LIMIT)}")
    ending = f"status {record.status}" + (f", limit {record.limit}" if record.limit else "")
    ending += f", error: {record.error}" if record.error else ""
    parts.append(f"## How the trial ended\n{ending}")
    if record.grades:
        grades = "\n".join(
            f"- {g.grader}: score {g.score:.2f}, {'passed' if g.passed else 'failed'}. "
            f"{truncate(g.reasoning, 500)}"
            for g in record.grades
        )
        parts.append(f"## Deterministic grades (from withheld ground truth)\n{grades}")
    return "\n\n".join(parts)


def _figures(record: TrialRecord, run_dir: Path | None) -> list[str]:
    if run_dir is None:
        return []
    images: list[str] = []
    for ex in record.code_cells:
        for rel in ex.images:
            path = run_dir / rel
            if path.is_file() and len(images) < MAX_FIGURES:
                images.append(base64.b64encode(path.read_bytes()).decode("ascii"))
    return images


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
    task: Task | None,
    model: ChatModel,
    *,
    samples: int = 1,
    rubric: Rubric | None = None,
    show_system_prompt: bool = True,
    include_figures: bool = False,
    run_dir: Path | None = None,
    temperature: float | None = None,
) -> Evaluation:
    """Judge one trial `samples` times; never raises for a bad reply (the Evaluation says why).

    `temperature` None keeps the provider's default: it samples, so `samples` > 1 measures the
    judge's spread, and newer APIs that refuse the parameter still work.
    """
    if samples < 1:
        raise GradingError(f"--samples must be at least 1, got {samples}")
    rubric = rubric.model_copy(deep=True) if rubric else Rubric()
    if task is not None and task.rubric:
        rubric.extra = "\n".join(filter(None, [rubric.extra, task.rubric]))
    criteria = list(rubric.criteria)
    images = _figures(record, run_dir) if include_figures and model.supports_images else []
    messages = [
        Message(role="system", content=_system_message(rubric)),
        Message(role="user", content=_user_message(record, task, show_system_prompt), images=images),
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
    return Evaluation(
        trial_id=record.trial_id,
        judge_model=model.spec,
        ok=bool(done),
        error="; ".join(failures) or None,
        samples=done,
        grade_mean=statistics.fmean(grades) if grades else None,
        grade_sd=statistics.stdev(grades) if len(grades) > 1 else (0.0 if grades else None),
        usage=total,
    )


class EvaluateSummary(BaseModel):
    judged: int = 0
    failed: int = 0
    skipped: int = 0
    cost_usd: float = 0.0
    warnings: list[str] = Field(default_factory=list)


def _load_task(ref: str, cache: dict[str, Task | None]) -> Task | None:
    if ref not in cache:
        try:
            from cellprompt.tasks import load_task  # type: ignore[attr-defined]

            cache[ref] = load_task(ref)
        except Exception:  # the judge still works from the trial's own first message
            cache[ref] = None
    return cache[ref]


def evaluate_run(
    store: RunStore,
    judge_model_spec: str | ChatModel,
    samples: int = 1,
    rubric_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    base_url: str | None = None,
    show_system_prompt: bool = True,
    include_figures: bool = False,
    warn: Callable[[str], None] | None = None,
) -> EvaluateSummary:
    """Judge every trial of a run not yet judged successfully, appending to `evaluations.jsonl`."""
    rubric = load_rubric(rubric_file) if rubric_file else None
    if isinstance(judge_model_spec, str):
        from cellprompt.llm import make_model  # type: ignore[attr-defined]

        model: ChatModel = make_model(judge_model_spec, base_url=base_url)
    else:
        model = judge_model_spec
    trials = store.trials()
    done = {tid for tid, ev in store.evaluations().items() if ev.ok}
    todo = [t for t in trials if t.trial_id not in done]
    summary = EvaluateSummary(skipped=len(trials) - len(todo))
    family = provider_family(model.spec)
    shared = sorted({t.spec.model for t in todo if family and provider_family(t.spec.model) == family})
    if shared:
        summary.warnings.append(
            f"judge {model.spec} is from the same provider family ({family}) as agent "
            f"model(s) {', '.join(shared)}: it may favour them; consider another judge"
        )
        if warn:
            warn(summary.warnings[-1])
    tasks: dict[str, Task | None] = {}
    for number, record in enumerate(todo, start=1):
        evaluation = judge_trial(
            record,
            _load_task(record.spec.task_ref, tasks),
            model,
            samples=samples,
            rubric=rubric,
            show_system_prompt=show_system_prompt,
            include_figures=include_figures,
            run_dir=store.path,
        )
        store.append_evaluation(evaluation)
        summary.judged += evaluation.ok
        summary.failed += not evaluation.ok
        summary.cost_usd += evaluation.usage.cost_usd
        if progress:
            progress(number, len(todo))
    return summary
