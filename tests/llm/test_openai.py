"""The real `openai` client against the fake OpenAI-compatible server."""

from __future__ import annotations

import time

import pytest

from cellprompt.config import Settings
from cellprompt.errors import MissingAPIKeyError, ModelError
from cellprompt.llm import Message, make_model
from cellprompt.llm.base import ToolSpec
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Call, Error, Hang, Reply, execute, submit

TOOLS = [
    ToolSpec(name="execute_python", description="run code",
             parameters={"type": "object", "properties": {"code": {"type": "string"}},
                         "required": ["code"]}),
    ToolSpec(name="submit_answer", description="answer",
             parameters={"type": "object", "properties": {"answer": {"type": "object"}}}),
]
PNG = "iVBORw0KGgo="


def model(server: FakeOpenAI, settings: Settings, name: str = "gpt-4o"):
    return make_model(f"openai:{name}", base_url=server.url, settings=settings)


def test_tool_calls_round_trip(fake_openai: FakeOpenAI, fast_llm_settings: Settings) -> None:
    fake_openai.push(Reply(text="looking", tool_calls=[execute("print(2)")]),
                     Reply(tool_calls=[submit({"n": 2})]))
    m = model(fake_openai, fast_llm_settings)
    history = [Message(role="system", content="be careful"), Message(role="user", content="go")]
    first = m.complete(history, tools=TOOLS)
    call = first.message.tool_calls[0]
    assert (call.name, call.arguments, call.parse_error) == ("execute_python", {"code": "print(2)"},
                                                             None)
    assert first.message.content == "looking" and first.stop_reason == "tool_use"
    history += [first.message, Message(role="tool", tool_call_id=call.id, content="2")]
    second = m.complete(history, tools=TOOLS)
    assert second.message.tool_calls[0].arguments == {"answer": {"n": 2}}

    sent = fake_openai.requests[1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["execute_python", "submit_answer"]
    assert [msg["role"] for msg in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert sent["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"code": "print(2)"}'
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": call.id, "content": "2"}


def test_images_go_as_data_urls_after_the_tool_results(fake_openai: FakeOpenAI,
                                                       fast_llm_settings: Settings) -> None:
    fake_openai.push(Reply(text="a nice plot"))
    calls = [execute("plot()"), execute("plot()")]
    from cellprompt.llm.base import ToolCall
    assistant = Message(role="assistant", tool_calls=[
        ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls])
    history = [Message(role="user", content="look", images=[PNG]), assistant,
               Message(role="tool", tool_call_id=calls[0].id, content="fig", images=[PNG]),
               Message(role="tool", tool_call_id=calls[1].id, content="fig", images=[PNG])]
    model(fake_openai, fast_llm_settings).complete(history)
    msgs = fake_openai.requests[0].body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user"]
    urls = [p["image_url"]["url"] for m in (msgs[0], msgs[4]) for p in m["content"]
            if p["type"] == "image_url"]
    assert urls == [f"data:image/png;base64,{PNG}"] * 3


def test_429_with_retry_after_is_waited_out(fake_openai: FakeOpenAI,
                                            fast_llm_settings: Settings) -> None:
    fake_openai.push(Error(429, "slow down", {"Retry-After": "1"}), Reply(text="ok"))
    started = time.monotonic()
    reply = model(fake_openai, fast_llm_settings).complete([Message(role="user", content="hi")])
    waited = time.monotonic() - started
    assert reply.message.content == "ok"
    assert len(fake_openai.requests) == 2
    assert 0.9 <= waited < 3.0  # the server's 1 s, not the 0.01 s backoff


def test_500_until_retries_run_out_is_one_line_model_error(fake_openai: FakeOpenAI,
                                                           fast_llm_settings: Settings) -> None:
    fake_openai.push(*[Error(500, "boom\nsecond line")] * 3)
    with pytest.raises(ModelError) as info:
        model(fake_openai, fast_llm_settings).complete([Message(role="user", content="hi")])
    message = str(info.value)
    assert len(fake_openai.requests) == 3  # first try + llm_max_retries=2
    assert "\n" not in message
    assert message.startswith("openai:gpt-4o: HTTP 500")
    assert "boom second line" in message and "3 attempts" in message


def test_client_errors_are_not_retried(fake_openai: FakeOpenAI,
                                       fast_llm_settings: Settings) -> None:
    fake_openai.push(Error(401, "bad key"), Reply(text="never"))
    with pytest.raises(ModelError, match=r"HTTP 401.*OPENAI_API_KEY"):
        model(fake_openai, fast_llm_settings).complete([Message(role="user", content="hi")])
    assert len(fake_openai.requests) == 1


def test_malformed_tool_call_json_becomes_parse_error(fake_openai: FakeOpenAI,
                                                      fast_llm_settings: Settings) -> None:
    fake_openai.push(Reply(tool_calls=[Call("execute_python", raw='{"code": "print(1)'),
                                       Call("submit_answer", raw="[1, 2]")]))
    reply = model(fake_openai, fast_llm_settings).complete([Message(role="user", content="hi")],
                                                          tools=TOOLS)
    bad, not_object = reply.message.tool_calls
    assert bad.arguments is None and bad.raw_arguments == '{"code": "print(1)'
    assert "not valid JSON" in (bad.parse_error or "")
    assert not_object.arguments is None and "JSON object" in (not_object.parse_error or "")


def test_hanging_server_times_out_after_retries(fake_openai: FakeOpenAI) -> None:
    settings = Settings(llm_timeout_s=0.3, llm_max_retries=1, llm_retry_base_s=0.01)
    fake_openai.push(Hang(5), Hang(5))
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"openai:gpt-4o: timed out after 0.3s .*2 attempts"):
        model(fake_openai, settings).complete([Message(role="user", content="hi")])
    assert time.monotonic() - started < 3.0
    assert len(fake_openai.requests) == 2


def test_connection_refused_is_retried_then_reported(fast_llm_settings: Settings) -> None:
    with FakeOpenAI() as server:
        url = server.url
    m = make_model("openai:gpt-4o", base_url=url, settings=fast_llm_settings)
    with pytest.raises(ModelError, match=r"connection failed.*3 attempts"):
        m.complete([Message(role="user", content="hi")])


def test_usage_and_cost(fake_openai: FakeOpenAI, fast_llm_settings: Settings) -> None:
    fake_openai.push(Reply(text="a", input_tokens=1_000_000, output_tokens=100_000,
                           cached_tokens=400_000))
    usage = model(fake_openai, fast_llm_settings).complete(
        [Message(role="user", content="hi")]).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (1_000_000, 100_000,
                                                                             400_000)
    # gpt-4o: 2.50 input, 1.25 cached input, 10.00 output per 1M tokens
    assert usage.cost_usd == pytest.approx(0.6 * 2.50 + 0.4 * 1.25 + 0.1 * 10.00)
    assert not usage.cost_unknown


def test_price_override_and_unknown_model(fake_openai: FakeOpenAI,
                                          fast_llm_settings: Settings) -> None:
    settings = fast_llm_settings.model_copy(
        update={"prices": {"openai:my-local-llm": {"input": 1.0, "output": 2.0}}})
    fake_openai.push(Reply(input_tokens=1_000_000, output_tokens=1_000_000),
                     Reply(input_tokens=10, output_tokens=10))
    priced = model(fake_openai, settings, "my-local-llm").complete(
        [Message(role="user", content="hi")]).usage
    assert priced.cost_usd == pytest.approx(3.0) and not priced.cost_unknown
    unknown = model(fake_openai, settings, "mystery-7b").complete(
        [Message(role="user", content="hi")]).usage
    assert unknown.cost_usd == 0.0 and unknown.cost_unknown


def test_response_schema_uses_json_schema_then_falls_back(fake_openai: FakeOpenAI,
                                                          fast_llm_settings: Settings) -> None:
    schema = {"type": "object", "properties": {"score": {"type": "number"}}}
    m = model(fake_openai, fast_llm_settings)
    fake_openai.push(Reply(text='{"score": 1}'))
    assert m.complete([Message(role="user", content="grade")],
                      response_schema=schema).message.content == '{"score": 1}'
    assert fake_openai.requests[0].body["response_format"]["json_schema"]["schema"] == schema

    fake_openai.reset()
    fake_openai.push(Error(400, "response_format json_schema is not supported"),
                     Reply(text='{"score": 2}'), Reply(text='{"score": 3}'))
    assert m.complete([Message(role="user", content="grade")],
                      response_schema=schema).message.content == '{"score": 2}'
    retry = fake_openai.requests[1].body
    assert retry["response_format"] == {"type": "json_object"}
    assert retry["messages"][0]["role"] == "system" and '"score"' in retry["messages"][0]["content"]
    # the model remembers the server's limits: no second refused request
    m.complete([Message(role="user", content="again")], response_schema=schema)
    assert len(fake_openai.requests) == 3
    assert fake_openai.requests[2].body["response_format"] == {"type": "json_object"}


def test_parameters_sent(fake_openai: FakeOpenAI, fast_llm_settings: Settings) -> None:
    fake_openai.push(Reply(text="x", stop="max_tokens"))
    reply = model(fake_openai, fast_llm_settings).complete(
        [Message(role="user", content="hi")], max_tokens=55, temperature=0.0)
    body = fake_openai.requests[0].body
    assert (body["max_tokens"], body["temperature"], body["model"]) == (55, 0.0, "gpt-4o")
    assert reply.stop_reason == "max_tokens"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                        fast_llm_settings: Settings) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        make_model("openai:gpt-4o", settings=fast_llm_settings)
    assert str(info.value) == ("OPENAI_API_KEY is not set: run `cellprompt configure` "
                               "or export it")


def test_key_and_base_url_from_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                      fake_openai: FakeOpenAI,
                                      fast_llm_settings: Settings) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY=sk-from-dotenv\nOPENAI_BASE_URL={fake_openai.url}\n")
    fake_openai.push(Reply(text="hi"))
    make_model("openai:gpt-4o", settings=fast_llm_settings).complete(
        [Message(role="user", content="hi")])
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-from-dotenv"


def test_local_server_needs_no_key(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                   fake_openai: FakeOpenAI, fast_llm_settings: Settings) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake_openai.push(Reply(text="hi"))
    model(fake_openai, fast_llm_settings).complete([Message(role="user", content="hi")])
    assert fake_openai.requests[0].headers["authorization"] == "Bearer not-needed"
