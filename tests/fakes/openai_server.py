"""A fake OpenAI-compatible server: `POST /v1/chat/completions`."""

from __future__ import annotations

from typing import Any

from tests.fakes.script import Error, FakeRequest, Reply
from tests.fakes.server import FakeLLMServer

_FINISH = {"tool_use": "tool_calls", "end_turn": "stop", "max_tokens": "length"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_api_key", 404: "not_found_error",
                429: "rate_limit_exceeded"}


def _text_of(content: Any) -> tuple[str, int]:
    """(text, number of images) of a message's content: a string or a list of parts."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts = [p.get("text", "") for p in content if p.get("type") == "text"]
    images = sum(1 for p in content if p.get("type") == "image_url")
    return "\n".join(texts), images


class FakeOpenAI(FakeLLMServer):
    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def accepts(self, path: str) -> bool:
        return path.rstrip("/").endswith("/chat/completions")

    def describe(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> FakeRequest:
        req = FakeRequest(path=path, headers=headers, body=body)
        req.tool_names = [t["function"]["name"] for t in body.get("tools") or []]
        systems: list[str] = []
        for msg in body.get("messages", []):
            text, images = _text_of(msg.get("content"))
            req.image_count += images
            if msg["role"] in ("system", "developer"):
                systems.append(text)
            elif msg["role"] == "assistant":
                req.turn += 1
            elif msg["role"] == "tool":
                req.tool_results.append(text)
            elif msg["role"] == "user":
                req.user_texts.append(text)
        req.system = "\n\n".join(systems)
        return req

    def render_reply(self, reply: Reply, request: FakeRequest) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.argument_text()}}
                for c in reply.tool_calls
            ]
        stop = reply.stop or ("tool_use" if reply.tool_calls else "end_turn")
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": reply.model or request.model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": _FINISH.get(stop, stop), "logprobs": None}],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
                "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            },
        }

    def render_error(self, error: Error) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(error.status, "server_error")
        return {"error": {"message": error.message, "type": kind, "param": None, "code": None}}
