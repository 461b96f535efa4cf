"""A fake Anthropic server: `POST /v1/messages`."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.script import Error, FakeRequest, Reply
from tests.fakes.server import FakeLLMServer

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error", 529: "overloaded_error"}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


class FakeAnthropic(FakeLLMServer):
    def accepts(self, path: str) -> bool:
        return path.split("?")[0].rstrip("/").endswith("/v1/messages")

    def render_model(self, name: str) -> dict[str, Any]:
        return {"type": "model", "id": name, "display_name": name,
                "created_at": "2025-01-01T00:00:00Z"}

    def describe(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> FakeRequest:
        req = FakeRequest(path=path, headers=headers, body=body)
        req.tool_names = [t["name"] for t in body.get("tools") or []]
        system = body.get("system", "")
        req.system = system if isinstance(system, str) else \
            "\n\n".join(b.get("text", "") for b in system)
        for msg in body.get("messages", []):
            if msg["role"] == "assistant":
                req.turn += 1
                continue
            texts: list[str] = []
            for block in _blocks(msg.get("content")):
                if block["type"] == "text":
                    texts.append(block["text"])
                elif block["type"] == "image":
                    req.image_count += 1
                elif block["type"] == "tool_result":
                    inner = _blocks(block.get("content"))
                    req.tool_results.append(
                        "\n".join(b.get("text", "") for b in inner if b["type"] == "text"))
                    req.image_count += sum(1 for b in inner if b["type"] == "image")
            if texts:
                req.user_texts.append("\n".join(texts))
        return req

    def render_reply(self, reply: Reply, request: FakeRequest) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        for call in reply.tool_calls:
            text = call.argument_text()
            try:
                value: Any = json.loads(text)
            except json.JSONDecodeError:
                value = text  # malformed on purpose: a string where an object belongs
            content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": value})
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or request.model,
            "content": content,
            "stop_reason": reply.stop or ("tool_use" if reply.tool_calls else "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens - reply.cached_tokens,
                      "output_tokens": reply.output_tokens,
                      "cache_read_input_tokens": reply.cached_tokens,
                      "cache_creation_input_tokens": 0},
        }

    def render_error(self, error: Error) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}
