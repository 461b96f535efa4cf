"""The shared retry loop: which failures are retried, how long it waits, how it gives up."""

from __future__ import annotations

import email.utils
import random

import pytest

from cellprompt.errors import ModelError
from cellprompt.llm.retry import Failure, RetryPolicy, backoff_s, call_with_retries, parse_retry_after


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=1_000_000.0) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_s=1.0, max_wait_s=5.0)
    rng = random.Random(0)
    for retry, ceiling in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        waits = [backoff_s(retry, policy, None, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered
    assert backoff_s(0, policy, 3.0) == 3.0  # the server's word wins
    assert backoff_s(0, policy, 600.0) == 5.0  # but is capped


class Boom(Exception):
    pass


def _classify(exc: Exception) -> Failure | None:
    if isinstance(exc, Boom):
        return Failure(retryable=str(exc) != "fatal", reason=f"boom {exc}", retry_after_s=0.5)
    return None


def test_retries_then_succeeds_waiting_as_told() -> None:
    outcomes: list[object] = [Boom("a"), Boom("b"), "ok"]
    waits: list[float] = []

    def attempt() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return str(item)

    assert call_with_retries(attempt, classify=_classify, policy=RetryPolicy(max_retries=3),
                             what="m", sleep=waits.append) == "ok"
    assert waits == [0.5, 0.5]


def test_gives_up_not_retryable_and_bugs() -> None:
    waits: list[float] = []

    def always() -> None:
        raise Boom("x")

    with pytest.raises(ModelError, match=r"^m: boom x \(gave up after 3 attempts\)$"):
        call_with_retries(always, classify=_classify, policy=RetryPolicy(max_retries=2),
                          what="m", sleep=waits.append)
    assert len(waits) == 2

    def fatal() -> None:
        raise Boom("fatal")

    with pytest.raises(ModelError, match=r"^m: boom fatal$"):
        call_with_retries(fatal, classify=_classify, policy=RetryPolicy(), what="m",
                          sleep=waits.append)

    def bug() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_retries(bug, classify=_classify, policy=RetryPolicy(), what="m")
