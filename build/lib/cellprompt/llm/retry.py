"""One retry loop for every provider, so OpenAI and Anthropic back off the same way.

The SDK clients are built with `max_retries=0`: their own loops differ between
providers and versions, and would multiply with ours.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from cellprompt.errors import ModelError

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait; `max_retries` counts retries after the first attempt."""

    max_retries: int = 5
    base_s: float = 1.0
    max_wait_s: float = 60.0


@dataclass(frozen=True)
class Failure:
    """A provider error translated into what the retry loop needs to know."""

    retryable: bool
    reason: str  # one line: "HTTP 429 (rate_limit_error): slow down" or "timed out after 120s"
    retry_after_s: float | None = None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, `Retry-After` seconds or HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(retry: int, policy: RetryPolicy, retry_after_s: float | None,
              rng: random.Random | None = None) -> float:
    """Wait before retry number `retry` (0-based): the server's word if given, else jittered 2^n."""
    if retry_after_s is not None:
        return min(retry_after_s, policy.max_wait_s)
    ceiling = min(policy.max_wait_s, policy.base_s * (2**retry))
    return ceiling * (0.5 + 0.5 * (rng or random).random())  # "equal jitter": never near zero


def call_with_retries(
    attempt: Callable[[], T],
    *,
    classify: Callable[[Exception], Failure | None],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `attempt` until it succeeds, a failure is not retryable, or retries run out.

    `classify` returns None for exceptions that are not provider errors (bugs): those
    propagate untouched. `what` names the model in the final one-line `ModelError`.
    """
    retry = 0
    while True:
        try:
            return attempt()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retryable:
                raise ModelError(f"{what}: {failure.reason}") from exc
            if retry >= policy.max_retries:
                raise ModelError(
                    f"{what}: {failure.reason} (gave up after {retry + 1} attempts)"
                ) from exc
            sleep(backoff_s(retry, policy, failure.retry_after_s))
            retry += 1
