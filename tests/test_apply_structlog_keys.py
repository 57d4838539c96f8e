"""Storm events logged through structlog keep every key: none collides with structlog's own.

structlog's standard processors write their own keys into the event dict —
``add_log_level`` writes ``level`` (in its default configuration and in
``structlog.stdlib``), ``TimeStamper`` ``timestamp``, ``add_logger_name`` ``logger`` — and
overwrite a key of that name the event brought. The budget's events used to call their
token count ``level``: through structlog, the count became ``"warning"``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent, StructlogHook

STRUCTLOG_OWN = {"event", "level", "timestamp", "logger", "logger_name", "exc_info", "stack_info"}


def capturing_hook() -> tuple[StructlogHook, list[dict[str, Any]]]:
    """A StructlogHook whose logger runs structlog's level processor, then keeps the dict."""
    seen: list[dict[str, Any]] = []

    def keep(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        seen.append(dict(event_dict))
        raise structlog.DropEvent

    logger = structlog.wrap_logger(
        structlog.PrintLogger(), processors=[structlog.processors.add_log_level, keep]
    )
    return StructlogHook(logger), seen


SMALL = rp.EUGPT.evolve(name="small", budget=rp.RetryBudget(capacity=10, refill_rate=0))


def test_budget_exhausted_reaches_structlog_with_its_token_count() -> None:
    """``budget.exhausted`` through structlog (with ``add_log_level``): the exact event dict,
    the token count under ``tokens`` and the log level under ``level`` (before: the count
    was sent as ``level`` and overwritten by ``"warning"``)."""
    hook, seen = capturing_hook()

    @rp.retry(SMALL)
    def down() -> None:
        raise ConnectionRefusedError("down")

    previous = rp.instrumentation.get_hooks()
    rp.instrumentation.set_hooks([hook])
    try:
        with rp.testing.instant(), pytest.raises(ConnectionRefusedError):
            down()
    finally:
        rp.instrumentation.set_hooks(previous)
    exhausted = [e for e in seen if e["event"] == "budget.exhausted"]
    assert exhausted == [
        {
            "event": "budget.exhausted",
            "level": "warning",
            "call": "test_budget_exhausted_reaches_structlog_with_its_token_count.<locals>.down",
            "policy": "small",
            "attempt": 3,
            "kind": None,
            "status": None,
            "code": None,
            "delay": 0.0,
            "elapsed": 0.0,
            "tokens": 0.0,
            "capacity": 10.0,
        }
    ]


STORM_KEYS = {
    # every storm event's keys, as docs/storm.md lists them
    "budget.exhausted": {"tokens", "capacity"},
    "budget.recovered": {"tokens", "capacity"},
    "breaker.opened": {"host", "state", "retry_in"},
    "breaker.half_open": {"host", "state"},
    "breaker.closed": {"host", "state"},
    "limiter.rate_changed": {"rate", "previous", "active"},
    "retry.rate_limit_persistent": {"consecutive", "window", "advice"},
    "store.unavailable": {"store", "error"},
    "store.recovered": {"store"},
}


@pytest.mark.parametrize(("name", "keys"), sorted(STORM_KEYS.items()))
def test_no_event_key_is_one_structlog_owns(name: str, keys: set[str]) -> None:
    """No key of any event's log dict (the decision keys and each storm event's own) is one
    structlog's processors write."""
    event = RetryEvent(
        name=name, call="c", attempt=1, policy=rp.EUGPT, extra=dict.fromkeys(keys, 1)
    )
    assert not (event.to_log().keys() & STRUCTLOG_OWN)
