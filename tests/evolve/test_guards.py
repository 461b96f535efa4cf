"""The guards: budget preflight, copy check, length budget, truncated replies, section round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellprompt.errors import EvolveError
from cellprompt.evolve import copied_spans, plan_budget, preflight, start_evolution, word_count
from cellprompt.evolve.reflection import Reflector, extract_prompt
from cellprompt.evolve.sections import join_sections, split_sections
from cellprompt.evolve.simulation import SimWorld
from cellprompt.evolve.stats import NoiseModel
from cellprompt.llm.base import ChatReply, Message, Usage
from tests.evolve.conftest import sim_config


class ScriptedModel:
    """A ChatModel that answers from a list and keeps every request it got."""

    spec = "scripted"
    provider = "scripted"
    supports_tools = False
    supports_images = False

    def __init__(self, *replies: tuple[str, str]) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[list[Message], int | None]] = []

    def complete(self, messages, *, tools=None, max_tokens=None, temperature=None, response_schema=None):
        self.requests.append((list(messages), max_tokens))
        text, stop = self.replies.pop(0)
        return ChatReply(
            message=Message(role="assistant", content=text), stop_reason=stop, usage=Usage(output_tokens=10)
        )


def reflector(model: ScriptedModel, *, sources: list[str] = (), max_words: int = 50) -> Reflector:  # type: ignore[assignment]
    return Reflector(
        model,
        objective="be right",
        max_words=max_words,
        copy_words=12,
        forbidden=lambda: list(sources),
        max_tokens=1000,
    )


# --- budget -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["iterative", "gepa"])
def test_preflight_refuses_a_budget_too_small_for_three_proposals(
    world: SimWorld, strategy: str, tmp_path: Path
) -> None:
    plan = plan_budget(sim_config(world, strategy=strategy, budget=10_000))
    with pytest.raises(EvolveError) as info:
        start_evolution(sim_config(world, strategy=strategy, budget=plan.minimum_total - 1), tmp_path)
    assert f"--budget {plan.minimum_total}" in info.value.message
    assert "\n" not in info.value.message
    assert not any(tmp_path.iterdir())  # nothing created, nothing spent
    assert preflight(sim_config(world, strategy=strategy, budget=plan.minimum_total)).proposals == 3


def test_trials_per_proposal_follow_tasks_and_replicates(world: SimWorld) -> None:
    one = plan_budget(sim_config(world, budget=1000, replicates=1))
    three = plan_budget(sim_config(world, budget=1000, replicates=3))
    train, val = len(world.split("train")), len(world.split("val"))
    assert one.per_proposal == train + 2 * val
    assert three.per_proposal == 3 * one.per_proposal
    assert three.test == 2 * len(world.split("test")) * 3


def test_test_tasks_must_be_held_out(world: SimWorld, tmp_path: Path) -> None:
    config = sim_config(world, budget=1000).model_copy(update={"test_tasks": world.split("val")[:1]})
    with pytest.raises(EvolveError, match="held out"):
        start_evolution(config, tmp_path)


# --- copy check and length budget ----------------------------------------------------------------


def test_copied_spans_find_long_verbatim_runs_only() -> None:
    source = (
        "The dataset is at /data/pbmc.h5ad (700 PBMCs). A common filter removes cells whose "
        "mitochondrial reads exceed 2% of their total counts."
    )
    copied = (
        "Rules:\n- a common filter removes cells whose mitochondrial reads exceed 2% of their total counts!"
    )
    assert copied_spans(copied, [source]) == [
        "a common filter removes cells whose mitochondrial reads exceed 2 of their total counts"
    ]
    paraphrase = "- Filter cells with a high mitochondrial share of counts before clustering."
    assert copied_spans(paraphrase, [source]) == []
    eleven = "a common filter removes cells whose mitochondrial reads exceed 2 of"
    assert copied_spans(eleven, [source]) == []


def test_a_copying_candidate_is_sent_back_and_dropped_if_it_insists() -> None:
    objective = "How many cells would that filter remove and what is the median total counts per cell here"
    copy = f"<prompt>\nAlways answer: {objective}\n</prompt>"
    model = ScriptedModel((copy, "end_turn"), (copy, "end_turn"), (copy, "end_turn"))
    proposal = reflector(model, sources=[objective]).propose("You analyse data.", ["evidence"])
    assert proposal.text is None and proposal.rejected is not None
    assert proposal.flags[0].startswith("copied from a task text")
    assert "cannot be used: copied" in model.requests[1][0][-1].content


def test_a_copying_candidate_fixed_on_request_is_accepted() -> None:
    objective = "How many cells would that filter remove and what is the median total counts per cell here"
    model = ScriptedModel(
        (f"<prompt>\nNote: {objective}\n</prompt>", "end_turn"),
        ("<prompt>\nCheck QC metrics before filtering.\n</prompt>", "end_turn"),
    )
    proposal = reflector(model, sources=[objective]).propose("You analyse data.", ["evidence"])
    assert proposal.text == "Check QC metrics before filtering."
    assert proposal.attempts == 2


def test_a_candidate_over_the_length_budget_is_sent_back() -> None:
    long = "<prompt>\n" + " ".join(["word"] * 80) + "\n</prompt>"
    model = ScriptedModel((long, "end_turn"), ("<prompt>\nshort and sweet\n</prompt>", "end_turn"))
    proposal = reflector(model, max_words=50).propose("You analyse data.", ["evidence"])
    assert proposal.text == "short and sweet"
    assert "length: 80 words over the budget of 50" in model.requests[1][0][-1].content
    assert "At most 50 words" in model.requests[0][0][1].content


def test_a_truncated_reply_is_detected_and_asked_again_with_more_room() -> None:
    cut = "Analysis first.\n<prompt>\nRule one.\nRule tw"
    model = ScriptedModel((cut, "max_tokens"), ("<prompt>\nRule one.\nRule two.\n</prompt>", "end_turn"))
    proposal = reflector(model).propose("You analyse data.", ["evidence"])
    assert proposal.text == "Rule one.\nRule two."
    assert [mt for _, mt in model.requests] == [1000, 2000]


def test_a_reply_cut_without_a_stop_reason_is_still_caught() -> None:
    model = ScriptedModel(("<prompt>\nRule one.\nRule tw", None), ("<prompt>\nRule one.\n</prompt>", None))
    assert reflector(model).propose("x", ["e"]).text == "Rule one."


def test_extract_prompt_ignores_inline_mentions_of_the_tags() -> None:
    reply = "Return it between <prompt> and </prompt>.\n<prompt>\nThe real one.\n</prompt>"
    assert extract_prompt(reply) == "The real one."
    assert extract_prompt("no block") is None


def test_reflection_request_carries_the_evidence_and_failed_attempts() -> None:
    model = ScriptedModel(("<prompt>\nnew\n</prompt>", "end_turn"))
    reflector(model).propose(
        "old prompt",
        ["### Task t1: score 0.00\nFailed graders:\n- g (score 0.00): why"],
        failed_attempts=["added: be careful (validation -0.10)"],
    )
    request = model.requests[0][0][1].content
    assert "<prompt>\nold prompt\n</prompt>" in request
    assert "- g (score 0.00): why" in request
    assert "added: be careful" in request


# --- sections and noise ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "no headings at all\n",
        "intro\n## A\none\n## B\ntwo",
        "## A\n## A\nsame name twice\n",
        "",
        "## Only\nbody\n\n",
    ],
)
def test_sections_round_trip(text: str) -> None:
    sections = split_sections(text)
    assert join_sections(sections) == text
    assert len(set(sections)) == len(sections)


def test_noise_model_needs_more_than_a_lucky_draw() -> None:
    noise = NoiseModel()
    for task in ("a", "b", "c"):
        noise.add("inc", task, [0.2, 0.6, 0.4, 0.0, 0.8])  # a noisy task score
    lucky = noise.compare({"a": [0.6], "b": [0.6], "c": [0.4]}, {"a": [0.4], "b": [0.4], "c": [0.4]})
    assert lucky.delta > 0 and not lucky.wins(z=1.0)
    solid = noise.compare({t: [0.9] * 6 for t in "abc"}, {t: [0.4] * 6 for t in "abc"})
    assert solid.wins(z=1.0)
    assert word_count("Use HVGs, then PCA (50 PCs).") == 6
