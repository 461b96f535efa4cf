"""The real `anthropic` client against the fake Anthropic server."""

from __future__ import annotations

import json
import time

import pytest

from cellprompt.config import Settings
from cellprompt.errors import MissingAPIKeyError, ModelError
from cellprompt.llm import Message, make_model
from cellprompt.llm.base import ToolSpec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.script import Call, Error, Hang, Reply, execute

# the SDK warns about model names it knows are retiring; the fake does not care
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

TOOLS = [ToolSpec(name="execute_python", description="run code",
                  parameters={"type": "object", "properties": {"code": {"type": "string"}}})]
PNG = "iVBORw0KGgo="


def model(server: FakeAnthropic, settings: Settings, name: str = "claude-sonnet-4-5"):
    return make_model(f"anthropic:{name}", base_url=server.url, settings=settings)


def test_tool_calls_round_trip_with_system_and_images(fake_anthropic: FakeAnthropic,
                                                      fast_llm_settings: Settings) -> None:
    fake_anthropic.push(Reply(text="let me see", tool_calls=[execute("plot()")]),
                        Reply(text="done"))
    m = model(fake_anthropic, fast_llm_settings)
    history = [Message(role="system", content="you are careful"),
               Message(role="user", content="go", images=[PNG])]
    first = m.complete(history, tools=TOOLS, max_tokens=300)
    call = first.message.tool_calls[0]
    assert (call.name, call.arguments, first.stop_reason) == ("execute_python",
                                                              {"code": "plot()"}, "tool_use")
    history += [first.message,
                Message(role="tool", tool_call_id=call.id, content="ok", images=[PNG]),
                Message(role="user", content="and now?")]
    assert m.complete(history, tools=TOOLS).message.content == "done"

    body = fake_anthropic.requests[1].body
    assert body["system"] == "you are careful"
    assert [msg["role"] for msg in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][1] == {"type": "tool_use", "id": call.id,
                                                 "name": "execute_python",
                                                 "input": {"code": "plot()"}}
    result, follow_up = body["messages"][2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call.id
    assert result["content"][1]["source"] == {"type": "base64", "media_type": "image/png",
                                              "data": PNG}
    assert follow_up == {"type": "text", "text": "and now?"}
    assert body["tools"][0]["input_schema"] == TOOLS[0].parameters
    assert fake_anthropic.requests[0].body["max_tokens"] == 300
    assert fake_anthropic.requests[1].image_count == 2


def test_overloaded_with_retry_after_then_success(fake_anthropic: FakeAnthropic,
                                                  fast_llm_settings: Settings) -> None:
    fake_anthropic.push(Error(529, "overloaded", {"retry-after": "1"}), Reply(text="ok"))
    started = time.monotonic()
    reply = model(fake_anthropic, fast_llm_settings).complete([Message(role="user", content="x")])
    assert reply.message.content == "ok"
    assert 0.9 <= time.monotonic() - started < 3.0
    assert len(fake_anthropic.requests) == 2


def test_errors_after_retries_and_timeouts(fake_anthropic: FakeAnthropic) -> None:
    settings = Settings(llm_timeout_s=0.3, llm_max_retries=1, llm_retry_base_s=0.01)
    fake_anthropic.push(Error(500, "down"), Error(503, "still down"))
    with pytest.raises(ModelError, match=r"^anthropic:claude-sonnet-4-5: HTTP 503 \(api_error\): "
                                         r"still down \(gave up after 2 attempts\)$"):
        model(fake_anthropic, settings).complete([Message(role="user", content="x")])
    fake_anthropic.push(Hang(5), Hang(5))
    with pytest.raises(ModelError, match=r"timed out after 0\.3s"):
        model(fake_anthropic, settings).complete([Message(role="user", content="x")])


def test_usage_with_cache_reads_and_cost(fake_anthropic: FakeAnthropic,
                                         fast_llm_settings: Settings) -> None:
    fake_anthropic.push(Reply(text="a", input_tokens=1_000_000, cached_tokens=500_000,
                              output_tokens=100_000))
    usage = model(fake_anthropic, fast_llm_settings, "claude-sonnet-4-5-20250929").complete(
        [Message(role="user", content="x")]).usage
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (1_000_000, 500_000,
                                                                             100_000)
    assert usage.cost_usd == pytest.approx(0.5 * 3.00 + 0.5 * 0.30 + 0.1 * 15.00)


def test_response_schema_is_a_forced_tool(fake_anthropic: FakeAnthropic,
                                          fast_llm_settings: Settings) -> None:
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}}
    fake_anthropic.push(Reply(tool_calls=[Call("respond", {"verdict": "pass"})]))
    reply = model(fake_anthropic, fast_llm_settings).complete(
        [Message(role="user", content="judge")], response_schema=schema)
    assert json.loads(reply.message.content) == {"verdict": "pass"}
    assert reply.message.tool_calls == [] and reply.stop_reason == "end_turn"
    body = fake_anthropic.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}
    assert body["tools"][-1]["input_schema"] == schema


def test_non_object_tool_input_becomes_parse_error(fake_anthropic: FakeAnthropic,
                                                   fast_llm_settings: Settings) -> None:
    fake_anthropic.push(Reply(tool_calls=[Call("execute_python", raw='{"code": ')]))
    call = model(fake_anthropic, fast_llm_settings).complete(
        [Message(role="user", content="x")], tools=TOOLS).message.tool_calls[0]
    assert call.arguments is None and call.parse_error


def test_missing_key(monkeypatch: pytest.MonkeyPatch, tmp_path,
                     fast_llm_settings: Settings) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match=r"^ANTHROPIC_API_KEY is not set: run "
                                                 r"`cellprompt configure` or export it$"):
        make_model("anthropic:claude-sonnet-4-5", settings=fast_llm_settings)
