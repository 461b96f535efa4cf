"""`anthropic:NAME`: the Messages API (system prompt apart, tool_use/tool_result blocks)."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic

from cellprompt.llm import sdk_errors
from cellprompt.llm.base import ChatReply, Message, ToolCall, ToolSpec, Usage
from cellprompt.llm.pricing import priced
from cellprompt.llm.retry import RetryPolicy, call_with_retries
from cellprompt.llm.toolcalls import parse_tool_call

DEFAULT_MAX_TOKENS = 4096  # the API requires a value; every current Claude model allows this
RESPOND_TOOL = "respond"  # the forced tool that carries a `response_schema` answer


def _image_block(b64_png: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64_png}}


def _tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments or {}}


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages) in Messages API form.

    Tool results become `tool_result` blocks of a user turn; consecutive user-side
    messages merge into one turn, as the API wants roles to alternate.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    out: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "system":
            continue
        blocks: list[dict[str, Any]]
        if msg.role == "tool":
            inner: list[dict[str, Any]] = [{"type": "text", "text": msg.content or "(no output)"}]
            inner += [_image_block(img) for img in msg.images]
            blocks = [{"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": inner}]
            role = "user"
        elif msg.role == "assistant":
            blocks = [{"type": "text", "text": msg.content}] if msg.content else []
            blocks += [_tool_use_block(c) for c in msg.tool_calls]
            role = "assistant"
        else:
            blocks = [{"type": "text", "text": msg.content}] if msg.content else []
            blocks += [_image_block(img) for img in msg.images]
            role = "user"
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _respond_tool(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A tool whose input is the answer; non-object schemas are wrapped (inputs are objects)."""
    wrapped = schema.get("type") != "object"
    input_schema = ({"type": "object", "properties": {"value": schema}, "required": ["value"]}
                    if wrapped else schema)
    tool = {"name": RESPOND_TOOL, "description": "Give your answer; its input is the reply.",
            "input_schema": input_schema}
    return tool, wrapped


class AnthropicModel:
    """One Claude model; the SDK does HTTP, `retry.py` does the retrying."""

    provider = "anthropic"
    supports_tools = True
    supports_images = True

    def __init__(self, name: str, *, api_key: str, base_url: str | None, timeout_s: float,
                 policy: RetryPolicy, prices: dict[str, dict[str, float]] | None = None) -> None:
        self.name = name
        self.spec = f"anthropic:{name}"
        self.base_url = base_url
        self._timeout_s = timeout_s
        self._policy = policy
        self._prices = prices or {}
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                           max_retries=0)

    def complete(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 max_tokens: int | None = None, temperature: float | None = None,
                 response_schema: dict[str, Any] | None = None) -> ChatReply:
        started = time.perf_counter()
        system, converted = to_anthropic(messages)
        params: dict[str, Any] = {"model": self.name, "messages": converted,
                                  "max_tokens": max_tokens or DEFAULT_MAX_TOKENS}
        if system:
            params["system"] = system
        if temperature is not None:
            # the SDK's typed signature no longer lists it; the Messages API still takes it
            params["extra_body"] = {"temperature": temperature}
        api_tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                     for t in tools or []]
        wrapped = False
        if response_schema is not None:
            respond, wrapped = _respond_tool(response_schema)
            api_tools.append(respond)
            params["tool_choice"] = {"type": "tool", "name": RESPOND_TOOL}
        if api_tools:
            params["tools"] = api_tools
        response = call_with_retries(
            lambda: self._client.messages.create(**params),
            classify=lambda exc: sdk_errors.classify(exc, anthropic, timeout_s=self._timeout_s,
                                                     key_var="ANTHROPIC_API_KEY"),
            policy=self._policy,
            what=self.spec,
        )
        return self._reply(response, time.perf_counter() - started,
                           schema_answer=response_schema is not None, wrapped=wrapped)

    def _reply(self, response: Any, latency_s: float, *, schema_answer: bool,
               wrapped: bool) -> ChatReply:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in response.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if schema_answer and block.name == RESPOND_TOOL:
                    value = block.input.get("value") if wrapped and isinstance(block.input, dict) \
                        else block.input
                    texts = [json.dumps(value)]  # the JSON answer is the reply's text
                    break
                raw = block.input if isinstance(block.input, str) else json.dumps(block.input)
                calls.append(parse_tool_call(block.id, block.name, raw))
        u = response.usage
        cache_read = getattr(u, "cache_read_input_tokens", None) or 0
        cache_write = getattr(u, "cache_creation_input_tokens", None) or 0
        usage = Usage(input_tokens=(u.input_tokens or 0) + cache_read + cache_write,
                      output_tokens=u.output_tokens or 0, cached_tokens=cache_read)
        stop = response.stop_reason
        if schema_answer and stop == "tool_use" and not calls:
            stop = "end_turn"
        return ChatReply(
            message=Message(role="assistant", content="".join(texts), tool_calls=calls),
            usage=priced(usage, self.spec, self._prices),
            latency_s=latency_s,
            stop_reason=stop,
            model=response.model or self.name,
        )
