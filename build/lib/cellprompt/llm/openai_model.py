"""`openai:NAME`: the Chat Completions API, which every OpenAI-compatible server speaks too."""

from __future__ import annotations

import json
import time
from typing import Any

import openai

from cellprompt.errors import ModelError
from cellprompt.llm import sdk_errors
from cellprompt.llm.base import ChatReply, Message, ToolSpec, Usage
from cellprompt.llm.pricing import priced
from cellprompt.llm.retry import RetryPolicy, call_with_retries
from cellprompt.llm.toolcalls import arguments_json, parse_tool_call

_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "function_call": "tool_use",
         "length": "max_tokens"}
# How JSON output is asked for, best first; a server that rejects one (HTTP 400/422) gets the next.
_SCHEMA_MODES = ("json_schema", "json_object", "instructions")


def _image_part(b64_png: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64_png}"}}


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Provider-neutral messages in Chat Completions form.

    Tool messages cannot hold images there, so a run of tool results is followed by one
    user message carrying their figures (after all results: the API wants every tool
    call answered right after the assistant message that made it).
    """
    out: list[dict[str, Any]] = []
    pending_images: list[dict[str, Any]] = []

    def flush() -> None:
        if pending_images:
            out.append({"role": "user", "content": [
                {"type": "text", "text": "Figures produced by the code above:"}, *pending_images]})
            pending_images.clear()

    for msg in messages:
        if msg.role != "tool":
            flush()
        if msg.role == "tool":
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id or "", "content": msg.content})
            pending_images.extend(_image_part(img) for img in msg.images)
        elif msg.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": msg.content or None}
            if msg.tool_calls:
                item["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": arguments_json(c)}}
                    for c in msg.tool_calls
                ]
            out.append(item)
        elif msg.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": msg.content}] if msg.content else []
            out.append({"role": msg.role, "content": parts + [_image_part(i) for i in msg.images]})
        else:
            out.append({"role": msg.role, "content": msg.content})
    flush()
    return out


def _schema_instruction(schema: dict[str, Any]) -> dict[str, Any]:
    return {"role": "system", "content": "Reply with one JSON object, no other text, matching "
                                         f"this JSON schema:\n{json.dumps(schema)}"}


class OpenAIModel:
    """One OpenAI (or compatible) model; the SDK does HTTP, `retry.py` does the retrying."""

    provider = "openai"
    supports_tools = True
    supports_images = True

    def __init__(self, name: str, *, api_key: str, base_url: str | None, timeout_s: float,
                 policy: RetryPolicy, prices: dict[str, dict[str, float]] | None = None) -> None:
        self.name = name
        self.spec = f"openai:{name}"
        self.base_url = base_url
        self._timeout_s = timeout_s
        self._policy = policy
        self._prices = prices or {}
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                     max_retries=0)
        self._schema_mode = 0  # index into _SCHEMA_MODES; advances when a server refuses one

    def complete(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 max_tokens: int | None = None, temperature: float | None = None,
                 response_schema: dict[str, Any] | None = None) -> ChatReply:
        started = time.perf_counter()
        params: dict[str, Any] = {"model": self.name, "messages": to_openai_messages(messages)}
        if tools:
            params["tools"] = [
                {"type": "function",
                 "function": {"name": t.name, "description": t.description,
                              "parameters": t.parameters}}
                for t in tools
            ]
        if max_tokens is not None:
            # OpenAI's own reasoning models refuse `max_tokens`; many compatible servers
            # only know it.
            params["max_completion_tokens" if self.base_url is None else "max_tokens"] = max_tokens
        if temperature is not None:
            params["temperature"] = temperature
        if response_schema is None:
            response = self._call(params)
        else:
            response = self._call_with_schema(params, response_schema)
        return self._reply(response, time.perf_counter() - started)

    def _call(self, params: dict[str, Any]) -> Any:
        return call_with_retries(
            lambda: self._client.chat.completions.create(**params),
            classify=lambda exc: sdk_errors.classify(exc, openai, timeout_s=self._timeout_s,
                                                     key_var="OPENAI_API_KEY"),
            policy=self._policy,
            what=self.spec,
        )

    def _call_with_schema(self, params: dict[str, Any], schema: dict[str, Any]) -> Any:
        """Structured output where the server has it, plain instructions where it has not."""
        while True:
            mode = _SCHEMA_MODES[self._schema_mode]
            attempt = dict(params)
            if mode == "json_schema":
                attempt["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": schema, "strict": False},
                }
            else:
                attempt["messages"] = [_schema_instruction(schema), *params["messages"]]
                if mode == "json_object":
                    attempt["response_format"] = {"type": "json_object"}
            try:
                return self._call(attempt)
            except ModelError as exc:
                cause = exc.__cause__
                refused = (isinstance(cause, openai.APIStatusError)
                           and cause.status_code in (400, 422))
                if not refused or mode == "instructions":
                    raise
                self._schema_mode += 1

    def _reply(self, response: Any, latency_s: float) -> ChatReply:
        if not response.choices:
            raise ModelError(f"{self.spec}: the server returned no choices; check the model name")
        choice = response.choices[0]
        msg = choice.message
        calls = [parse_tool_call(c.id, c.function.name, c.function.arguments)
                 for c in (msg.tool_calls or []) if getattr(c, "function", None) is not None]
        usage = Usage()
        if response.usage is not None:
            details = getattr(response.usage, "prompt_tokens_details", None)
            usage = Usage(input_tokens=response.usage.prompt_tokens or 0,
                          output_tokens=response.usage.completion_tokens or 0,
                          cached_tokens=(getattr(details, "cached_tokens", None) or 0))
        return ChatReply(
            message=Message(role="assistant", content=msg.content or "", tool_calls=calls),
            usage=priced(usage, self.spec, self._prices),
            latency_s=latency_s,
            stop_reason=_STOP.get(choice.finish_reason or "", choice.finish_reason),
            model=response.model or self.name,
        )

