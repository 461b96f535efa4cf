"""One conformance suite every `ChatModel` backend passes (real clients talk to the fakes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cellprompt.config import Settings
from cellprompt.llm import ChatModel, ChatReply, Message, make_model
from cellprompt.llm.base import ToolSpec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import FakeRequest, Reply, execute, submit

# the SDK warns about model names it knows are retiring; the fake does not care
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

TOOLS = [ToolSpec(name="execute_python", description="run",
                  parameters={"type": "object", "properties": {"code": {"type": "string"}}}),
         ToolSpec(name="submit_answer", description="answer",
                  parameters={"type": "object", "properties": {"answer": {"type": "object"}}})]


def solver(request: FakeRequest) -> Reply:
    """A policy agent: runs one cell, then submits what the cell printed."""
    if request.last_tool_result is None:
        return Reply(tool_calls=[execute('print(\'{"n": 3}\')')])
    return Reply(tool_calls=[submit({"n": 3})])


@pytest.fixture(params=["openai", "anthropic", "reference", "replay"])
def backend(request: pytest.FixtureRequest, fast_llm_settings: Settings,
            tmp_path: Path) -> ChatModel:
    kind = request.param
    if kind in ("openai", "anthropic"):
        server: FakeOpenAI | FakeAnthropic = request.getfixturevalue(f"fake_{kind}")
        server.policy = solver
        name = "gpt-4o" if kind == "openai" else "claude-sonnet-4-5"
        return make_model(f"{kind}:{name}", base_url=server.url, settings=fast_llm_settings)
    if kind == "reference":
        return make_model("reference", reference_cells=['print(\'{"n": 3}\')'])
    script = tmp_path / "r.yaml"
    script.write_text(json.dumps([{"code": "print('{\"n\": 3}')"}, {"answer": {"n": 3}}]))
    return make_model(f"replay:{script}")


def _loop(model: ChatModel, step: Callable[[str], str]) -> list[ChatReply]:
    history = [Message(role="system", content="sys"), Message(role="user", content="task")]
    replies = []
    for _ in range(4):
        reply = model.complete(history, tools=TOOLS)
        replies.append(reply)
        history.append(reply.message)
        call = reply.message.tool_calls[0]
        if call.name == "submit_answer":
            return replies
        history.append(Message(role="tool", tool_call_id=call.id,
                               content=step(call.arguments["code"])))
    raise AssertionError("no submit_answer within 4 turns")


def test_backend_conforms(backend: ChatModel) -> None:
    assert isinstance(backend, ChatModel)
    assert backend.provider in ("openai", "anthropic", "reference", "replay")
    assert backend.spec.startswith(backend.provider)
    assert backend.supports_tools
    replies = _loop(backend, lambda code: '[status: ok]\n{"n": 3}')
    assert len(replies) == 2
    for reply in replies:
        assert reply.message.role == "assistant"
        assert reply.stop_reason == "tool_use"
        assert reply.latency_s >= 0 and reply.usage.cost_usd >= 0
        for call in reply.message.tool_calls:
            assert call.id and isinstance(call.arguments, dict) and call.parse_error is None
    assert replies[-1].message.tool_calls[0].arguments == {"answer": {"n": 3}}
