"""Translate the `openai` and `anthropic` SDK exceptions (same shapes) into retry decisions."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from cellprompt.llm.retry import RETRYABLE_STATUS, Failure, parse_retry_after

_MAX_DETAIL = 200


def _detail(body: Any) -> tuple[str | None, str]:
    """(error type, message) from an error body: `{"error": {"type", "message"}}` or flat."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            kind = inner.get("type") or inner.get("code")
            return (str(kind) if kind else None), str(inner.get("message") or "")
        return None, str(inner)
    return None, "" if body is None else str(body)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def classify(exc: Exception, sdk: ModuleType, *, timeout_s: float, key_var: str) -> Failure | None:
    """A `Failure` for SDK errors, None for anything else (a bug, re-raised as is)."""
    if isinstance(exc, sdk.APITimeoutError):
        return Failure(retryable=True, reason=f"timed out after {timeout_s:g}s")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return Failure(retryable=True, reason=f"connection failed: {_one_line(str(cause))}")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        kind, message = _detail(exc.body)
        reason = f"HTTP {status}" + (f" ({kind})" if kind else "")
        if message:
            reason += f": {_one_line(message)}"
        if status in (401, 403):
            reason += f"; check {key_var} (`cellprompt configure`)"
        return Failure(
            retryable=status in RETRYABLE_STATUS,
            reason=reason,
            retry_after_s=parse_retry_after(dict(exc.response.headers)),
        )
    if isinstance(exc, sdk.APIError):  # a 2xx whose body is not what the API promises
        return Failure(retryable=False, reason=f"invalid response: {_one_line(str(exc))}")
    return None
