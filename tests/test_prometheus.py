"""The Prometheus hook: real events from real calls land in a real CollectorRegistry."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client import CollectorRegistry

import retrypolicy as rp
from retrypolicy import stores
from retrypolicy.instrumentation import RetryEvent, get_hooks, set_hooks
from retrypolicy.instrumentation.prometheus import PrometheusHook, install
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter

from .redis_server import RedisServer, free_port

TIMEOUT = 5.0
BODY = {"input": "hi", "stream": False}


@pytest.fixture(autouse=True)
def fresh_store() -> Iterator[None]:
    """A new default in-process store: no budget or breaker state leaks in or out."""
    previous = stores.get_default_store()
    stores.reset()
    try:
        yield
    finally:
        stores.reset(previous)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own (the global one is left alone)."""
    return CollectorRegistry()


@pytest.fixture
def hook(registry: CollectorRegistry) -> Iterator[PrometheusHook]:
    """A PrometheusHook installed process-wide for the test only."""
    previous = get_hooks()
    installed = PrometheusHook(registry)
    set_hooks([*previous, installed])
    try:
        yield installed
    finally:
        set_hooks(previous)


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fake EU GPT API answering 200 JSON unless scripted."""
    with FakeEUGPT() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session with the EU GPT policy mounted."""
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(rp.EUGPT))
        yield s


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0.0 when the series was never created."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def storm_event(name: str, policy: rp.Policy = rp.EUGPT, **extra: Any) -> RetryEvent:
    """A storm event as the stores report them: no call, attempt 0, keys in ``extra``."""
    return RetryEvent(name=name, call="", attempt=0, policy=policy, extra=extra)


# --------------------------------------------------------------------------- retry events


@pytest.mark.usefixtures("hook")
def test_retries_and_waits_of_an_adapter_call(
    registry: CollectorRegistry,
    server: FakeEUGPT,
    session: requests.Session,
    instant: rp.testing.Instant,
) -> None:
    """Two 503s then a 200: two retries of kind unavailable, their waits, a success after retry."""
    server.script(Reply.error(503), Reply.error(503))
    assert session.post(server.responses_url, json=BODY, timeout=TIMEOUT).status_code == 200
    labels = {"policy": "eugpt", "kind": "unavailable"}
    assert sample(registry, "retrypolicy_retries_total", **labels) == 2
    assert sample(registry, "retrypolicy_failed_attempts_total", **labels) == 2
    assert sample(registry, "retrypolicy_give_ups_total", **labels) == 0
    assert sample(registry, "retrypolicy_successes_after_retry_total", policy="eugpt") == 1
    assert sample(registry, "retrypolicy_retry_wait_seconds_count", **labels) == 2
    assert sample(registry, "retrypolicy_retry_wait_seconds_sum", **labels) == pytest.approx(
        sum(instant.waits)
    )
    assert sample(registry, "retrypolicy_attempts_total", policy="eugpt") == 0  # not wired


@pytest.mark.usefixtures("hook", "instant")
def test_give_ups_by_kind(
    registry: CollectorRegistry, server: FakeEUGPT, session: requests.Session
) -> None:
    """A 400 gives up at once; a 429 that keeps coming gives up after its 6 retries."""
    server.script(Reply.error(400), *[Reply.error(429, retry_after=0)] * 7)
    statuses = [
        session.post(server.responses_url, json=BODY, timeout=TIMEOUT).status_code for _ in range(2)
    ]
    assert statuses == [400, 429]
    bad = {"policy": "eugpt", "kind": "invalid_request"}
    limited = {"policy": "eugpt", "kind": "rate_limited"}
    assert sample(registry, "retrypolicy_give_ups_total", **bad) == 1
    assert sample(registry, "retrypolicy_retries_total", **bad) == 0
    assert sample(registry, "retrypolicy_give_ups_total", **limited) == 1
    assert sample(registry, "retrypolicy_retries_total", **limited) == 6
    assert sample(registry, "retrypolicy_failed_attempts_total", **limited) == 7
    assert sample(registry, "retrypolicy_successes_after_retry_total", policy="eugpt") == 0


@pytest.mark.usefixtures("instant")
def test_attempts_are_counted_when_the_hook_is_also_before_attempt(
    registry: CollectorRegistry, server: FakeEUGPT
) -> None:
    """As before_attempt, the hook counts every attempt, first-try successes included."""
    hook = PrometheusHook(registry)
    policy = rp.EUGPT.evolve(name="metered")

    @rp.retry(policy, before_attempt=hook, on_retry=hook, on_success=hook, on_give_up=hook)
    def call() -> requests.Response:
        return requests.post(server.responses_url, json=BODY, timeout=TIMEOUT)

    server.script(Reply.error(502))
    assert call().status_code == 200  # 2 attempts
    assert call().status_code == 200  # 1 attempt
    assert sample(registry, "retrypolicy_attempts_total", policy="metered") == 3
    assert sample(registry, "retrypolicy_retries_total", policy="metered", kind="unavailable") == 1


# --------------------------------------------------------------------------- storm protection


@pytest.mark.usefixtures("hook", "instant")
def test_budget_metrics_follow_a_real_outage(
    registry: CollectorRegistry, server: FakeEUGPT, session: requests.Session
) -> None:
    """A 10-token budget pays two retries, then runs dry; five successes bring it back."""
    policy = rp.EUGPT.evolve(
        name="tiny", budget=rp.RetryBudget(capacity=10, retry_cost=5, refill_rate=0)
    )
    session.mount("http://", RetryAdapter(policy))
    server.outage(60)
    assert session.post(server.responses_url, json=BODY, timeout=TIMEOUT).status_code == 503
    tiny = {"policy": "tiny"}
    assert sample(registry, "retrypolicy_retries_total", kind="unavailable", **tiny) == 2
    assert sample(registry, "retrypolicy_give_ups_total", kind="unavailable", **tiny) == 1
    assert sample(registry, "retrypolicy_budget_exhaustions_total", **tiny) == 1
    assert sample(registry, "retrypolicy_budget_exhausted", **tiny) == 1
    assert sample(registry, "retrypolicy_budget_level", **tiny) == 0
    assert sample(registry, "retrypolicy_budget_capacity", **tiny) == 10
    server.outage(0)
    for _ in range(5):
        session.post(server.responses_url, json=BODY, timeout=TIMEOUT)
    assert sample(registry, "retrypolicy_budget_exhausted", **tiny) == 0
    assert sample(registry, "retrypolicy_budget_level", **tiny) == 5  # read at the scrape
    assert sample(registry, "retrypolicy_budget_exhaustions_total", **tiny) == 1


@pytest.mark.usefixtures("hook", "instant")
def test_breaker_state_follows_a_real_outage(
    registry: CollectorRegistry, server: FakeEUGPT, session: requests.Session
) -> None:
    """A breaker that opens on an outage reads 2, and its opening is counted."""
    policy = rp.EUGPT.evolve(name="brk", breaker=rp.CircuitBreaker(min_calls=2, open_for=30))
    session.mount("http://", RetryAdapter(policy))
    server.outage(60)
    assert session.post(server.responses_url, json=BODY, timeout=TIMEOUT).status_code == 503
    with pytest.raises(rp.CircuitOpenError):
        session.post(server.responses_url, json=BODY, timeout=TIMEOUT)
    states = {
        s.labels["host"]: s.value
        for metric in registry.collect()
        if metric.name == "retrypolicy_breaker_state"
        for s in metric.samples
        if s.labels["policy"] == "brk"
    }
    assert list(states.values()) == [2.0]
    (host,) = states
    opened = {"policy": "brk", "host": host, "state": "open"}
    assert sample(registry, "retrypolicy_breaker_transitions_total", **opened) == 1


@pytest.mark.usefixtures("hook", "instant")
def test_limiter_rate_is_read_at_the_scrape(
    registry: CollectorRegistry, server: FakeEUGPT, session: requests.Session
) -> None:
    """After a real 429 the limiter paces; the gauge shows its rate as the store has it now."""
    policy = rp.EUGPT.evolve(name="paced", limiter=rp.AdaptiveLimiter())
    session.mount("http://", RetryAdapter(policy))
    server.script(Reply.error(429, retry_after=0))
    assert session.post(server.responses_url, json=BODY, timeout=TIMEOUT).status_code == 200
    rate = sample(registry, "retrypolicy_limiter_rate", policy="paced")
    assert rate > 0
    assert rate == pytest.approx(policy.stats().limiter_rate, rel=0.5)
    assert sample(registry, "retrypolicy_retries_total", policy="paced", kind="rate_limited") == 1


@pytest.mark.usefixtures("hook", "instant")
def test_store_metrics_follow_redis_going_and_coming_back(
    registry: CollectorRegistry, server: FakeEUGPT, session: requests.Session, tmp_path: Path
) -> None:
    """A RedisStore whose server is down reports unavailable (store_up 0), then recovered."""
    port = free_port()
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5, retry=None)
    previous = stores.get_default_store()
    stores.reset(stores.RedisStore(client, prefix="metrics-test", retry_every=0.0))
    redis_server = RedisServer(port=port, directory=tmp_path)
    try:
        server.script(Reply.error(503))
        session.post(server.responses_url, json=BODY, timeout=TIMEOUT)
        labels = {"policy": "eugpt", "store": "RedisStore"}
        assert sample(registry, "retrypolicy_store_unavailable_total", **labels) == 1
        assert sample(registry, "retrypolicy_store_up", **labels) == 0
        redis_server.start()
        server.script(Reply.error(503))
        session.post(server.responses_url, json=BODY, timeout=TIMEOUT)
        assert sample(registry, "retrypolicy_store_up", **labels) == 1
        assert sample(registry, "retrypolicy_store_unavailable_total", **labels) == 1
    finally:
        redis_server.stop()
        stores.reset(previous)
        client.close()


STORM_TABLE = [
    # (event name, extra, metric, labels, expected value): what each event moves by itself
    ("budget.exhausted", {"level": 3.0, "capacity": 500.0}, "budget_exhaustions_total", {}, 1.0),
    (
        "breaker.opened",
        {"host": "api.example:443", "state": "open", "retry_in": 15.0},
        "breaker_state",
        {"host": "api.example:443"},
        2.0,
    ),
    (
        "breaker.half_open",
        {"host": "api.example:443", "state": "half_open"},
        "breaker_state",
        {"host": "api.example:443"},
        1.0,
    ),
    (
        "breaker.closed",
        {"host": "api.example:443", "state": "closed"},
        "breaker_state",
        {"host": "api.example:443"},
        0.0,
    ),
    (
        "breaker.half_open",
        {"host": "api.example:443", "state": "half_open"},
        "breaker_transitions_total",
        {"host": "api.example:443", "state": "half_open"},
        1.0,
    ),
    ("retry.rate_limit_persistent", {"consecutive": 10}, "rate_limit_persistent_total", {}, 1.0),
    (
        "store.unavailable",
        {"store": "RedisStore", "error": "ConnectionError"},
        "store_unavailable_total",
        {"store": "RedisStore"},
        1.0,
    ),
    ("store.recovered", {"store": "RedisStore"}, "store_up", {"store": "RedisStore"}, 1.0),
]


@pytest.mark.parametrize(("name", "extra", "metric", "labels", "expected"), STORM_TABLE)
def test_storm_event_sets_its_metric(
    registry: CollectorRegistry,
    name: str,
    extra: dict[str, Any],
    metric: str,
    labels: dict[str, str],
    expected: float,
) -> None:
    """Each storm event of the contract moves the metric the docs name for it."""
    hook = PrometheusHook(registry)
    hook(storm_event(name, **extra))
    value = registry.get_sample_value(f"retrypolicy_{metric}", {"policy": "eugpt", **labels})
    assert value == expected


class BrokenStore:
    """A store whose backend is gone for good and which, against the contract, raises."""

    shared = False

    def budget(self, *args: object) -> Any:
        raise OSError("disk on fire")

    limiter = breaker = budget


def test_a_failed_read_reports_the_last_events(registry: CollectorRegistry) -> None:
    """When the store cannot be read at the scrape, the gauges show what the events said."""
    hook = PrometheusHook(registry)
    previous = stores.get_default_store()
    stores.reset(BrokenStore())  # type: ignore[arg-type]
    try:
        hook(storm_event("budget.exhausted", level=2.0, capacity=50.0))
        hook(storm_event("limiter.rate_changed", rate=12.5, previous=25.0))
        values = {
            name: sample(registry, f"retrypolicy_{name}", policy="eugpt")
            for name in ("budget_level", "budget_capacity", "budget_exhausted", "limiter_rate")
        }
    finally:
        stores.reset(previous)
    assert values == {
        "budget_level": 2.0,
        "budget_capacity": 50.0,
        "budget_exhausted": 1.0,
        "limiter_rate": 12.5,
    }


def test_policies_without_events_have_no_gauges(registry: CollectorRegistry) -> None:
    """A scrape before any event shows no budget series (nothing is read for unseen policies)."""
    PrometheusHook(registry)
    assert registry.get_sample_value("retrypolicy_budget_level", {"policy": "eugpt"}) is None


def test_breaker_hosts_are_capped(registry: CollectorRegistry) -> None:
    """Past max_hosts distinct hosts, breakers report under host="other": bounded series."""
    hook = PrometheusHook(registry, max_hosts=2)
    for host in ["a.example", "b.example", "c.example", "d.example", "a.example"]:
        hook(storm_event("breaker.opened", host=host, state="open", retry_in=1.0))
    hosts = {
        s.labels["host"]
        for metric in registry.collect()
        if metric.name == "retrypolicy_breaker_state"
        for s in metric.samples
    }
    assert hosts == {"a.example", "b.example", "other"}
    opened = {"policy": "eugpt", "state": "open"}
    assert sample(registry, "retrypolicy_breaker_transitions_total", host="other", **opened) == 2
    assert (
        sample(registry, "retrypolicy_breaker_transitions_total", host="a.example", **opened) == 2
    )


@pytest.mark.parametrize(
    "event",
    [
        storm_event("budget.exhausted"),  # no keys at all
        storm_event("budget.recovered", level="high", capacity=None),
        storm_event("breaker.opened", state="melted"),  # unknown state: the name says open
        storm_event("breaker.sideways", state="sideways"),
        storm_event("limiter.rate_changed", rate="fast"),
        storm_event("store.unavailable"),
        storm_event("something.new", anything=1),
    ],
    ids=lambda e: e.name,
)
def test_odd_events_never_raise(registry: CollectorRegistry, event: RetryEvent) -> None:
    """Missing or ill-typed keys and unknown names update what they can, and never raise."""
    PrometheusHook(registry)(event)
    assert registry.collect()  # a scrape works too


# --------------------------------------------------------------------------- installing


def test_install_adds_one_hook_per_registry(registry: CollectorRegistry) -> None:
    """install() appends a hook once, returns the same one again, and keeps other hooks."""
    previous = get_hooks()
    try:
        first = install(registry)
        again = install(registry)
        other = install(CollectorRegistry())
        hooks = get_hooks()
    finally:
        set_hooks(previous)
    assert first is again
    assert other is not first
    assert hooks == (*previous, first, other)


def test_namespace_prefixes_every_metric(registry: CollectorRegistry) -> None:
    """namespace= replaces the "retrypolicy" prefix."""
    hook = PrometheusHook(registry, namespace="llm")
    hook(storm_event("budget.exhausted", level=1.0, capacity=10.0))
    assert sample(registry, "llm_budget_exhaustions_total", policy="eugpt") == 1.0
    assert sample(registry, "llm_budget_capacity", policy="eugpt") == 500.0
    assert repr(hook) == "PrometheusHook(namespace='llm')"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "100"])
def test_max_hosts_must_be_a_positive_whole_number(value: object) -> None:
    """A bad max_hosts is refused, naming the option."""
    with pytest.raises(ValueError, match="max_hosts: expected a whole number >= 1"):
        PrometheusHook(CollectorRegistry(), max_hosts=value)  # type: ignore[arg-type]


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client the import fails with the extra to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "retrypolicy.instrumentation.prometheus")
    with pytest.raises(ImportError, match=r"pip install 'retrypolicy\[prometheus\]'"):
        importlib.import_module("retrypolicy.instrumentation.prometheus")


def test_the_budget_gauge_reads_the_store_the_call_path_uses(
    registry: CollectorRegistry, hook: PrometheusHook
) -> None:
    """A policy used with store= is reported from that store, not the default one; a hook
    told store= reads that store."""
    policy = rp.EUGPT.evolve(name="own-store", budget=rp.RetryBudget(capacity=20, refill_rate=0))
    mine = stores.InProcessStore()

    @rp.retry(policy, store=mine)
    def down() -> None:
        raise ConnectionRefusedError("down")

    with rp.testing.instant():
        with pytest.raises(ConnectionRefusedError):
            down()  # 4 retries paid from `mine`, then refused
        assert sample(registry, "retrypolicy_budget_level", policy="own-store") == 0.0
        assert stores.stats(policy).budget_level == 20.0  # the default store saw nothing
    told = PrometheusHook(CollectorRegistry(), store=stores.InProcessStore())
    assert told.store_of(policy) is told.store
    with pytest.raises(TypeError, match=r"expected a retrypolicy\.stores\.Store"):
        PrometheusHook(CollectorRegistry(), store="redis://x")  # type: ignore[arg-type]
