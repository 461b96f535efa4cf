"""The offline models: `reference` (the oracle) and `replay:FILE` (scripted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellprompt.errors import ModelError
from cellprompt.llm import Message, make_model
from cellprompt.llm.base import ChatModel


def _play(model: ChatModel, outputs: list[str]) -> list[Message]:
    """Drive `model` like the agent loop does, feeding `outputs` back as tool results."""
    history = [Message(role="system", content="p"), Message(role="user", content="task")]
    feed = iter(outputs)
    while True:
        reply = model.complete(history)
        history.append(reply.message)
        calls = reply.message.tool_calls
        if not calls or calls[0].name == "submit_answer":
            return history
        history.append(Message(role="tool", tool_call_id=calls[0].id, content=next(feed)))


def test_reference_plays_cells_then_submits_the_printed_json() -> None:
    model = make_model("reference", reference_cells=["import scanpy", "print(json.dumps(a))"])
    assert isinstance(model, ChatModel) and model.supports_tools
    history = _play(model, ["[status: ok]\n(no output)",
                            '[status: ok]\nlog line\n{"n_clusters": 8}\n[1 figure(s) attached]'])
    codes = [c.arguments["code"] for m in history if m.role == "assistant"
             for c in m.tool_calls if c.name == "execute_python" and c.arguments]
    assert codes == ["import scanpy", "print(json.dumps(a))"]
    final = history[-1].tool_calls[0]
    assert final.name == "submit_answer" and final.arguments == {"answer": {"n_clusters": 8}}
    assert json.loads(final.raw_arguments) == final.arguments


def test_reference_without_json_or_cells_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="no reference cells"):
        make_model("reference")
    with pytest.raises(ModelError, match=r"print\(json.dumps\(answer\)\)"):
        _play(make_model("reference", reference_cells=["x = 1"]), ["[status: ok]\n(no output)"])


def test_replay_tools_mode(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(
        "replies:\n"
        "  - text: looking\n"
        "    tool_calls: [{name: execute_python, arguments: {code: 'print(1)'}}]\n"
        "  - tool_calls: [{name: execute_python, raw_arguments: '{\"code\": '}]\n"
        "  - code: print(2)\n"
        "    input_tokens: 7\n"
        "  - answer: {n: 2}\n")
    model = make_model(f"replay:{path}")
    assert model.supports_tools and model.spec == f"replay:{path}"
    history = _play(model, ["1", "bad", "2"])
    replies = [m for m in history if m.role == "assistant"]
    assert replies[0].content == "looking"
    assert replies[1].tool_calls[0].parse_error and replies[1].tool_calls[0].arguments is None
    assert replies[2].tool_calls[0].arguments == {"code": "print(2)"}
    assert replies[3].tool_calls[0].arguments == {"answer": {"n": 2}}
    with pytest.raises(ModelError, match="has 4 replies and turn 5"):
        model.complete([*history, Message(role="user", content="more?")])


def test_replay_no_tools_mode_writes_fenced_code_and_eval_answer(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"tools": False, "when_exhausted": "repeat_last", "replies": [
        {"text": "Plan:", "code": "print(1)"}, {"answer": {"n": 1}}]}))
    model = make_model(f"replay:{path}")
    assert not model.supports_tools
    first = model.complete([Message(role="user", content="t")]).message
    assert first.content == "Plan:\n\n```python\nprint(1)\n```" and not first.tool_calls
    history = [Message(role="user", content="t"), first, Message(role="user", content="1")]
    second = model.complete(history).message
    assert second.content == '<EVAL_ANSWER>{"n": 1}</EVAL_ANSWER>'
    assert model.complete([*history, second]).message == second  # repeat_last


@pytest.mark.parametrize(("text", "match"), [
    ("replies: []", "replies"),
    ("tools: false\nreplies: [{tool_calls: [{name: x}]}]", "tools: false"),
    ("replies: [{txt: typo}]", r"replies\.0\.txt"),
    ("replies: [", "not valid YAML"),
])
def test_replay_file_errors_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ModelError, match=match):
        make_model(f"replay:{path}")


def test_unknown_specs() -> None:
    for spec in ("gpt-4o", "openai:", "replay:", "cohere:command"):
        with pytest.raises(ModelError, match="openai:NAME, anthropic:NAME, reference"):
            make_model(spec)
    with pytest.raises(ModelError, match="does not exist"):
        make_model("replay:/nonexistent/file.yaml")
