"""Prometheus metrics for retries and storm protection, as one hook.

Install it once, next to the logging hook, and expose the registry the usual way::

    from retrypolicy.instrumentation import prometheus

    prometheus.install()  # PrometheusHook() added to the process-wide hooks

Every metric is fed by events (:class:`~retrypolicy.instrumentation.RetryEvent`), so
it costs nothing on the success path: a call that succeeds at its first attempt
produces no event and is not counted, except by ``attempts`` when the hook is also
passed as ``before_attempt=`` (see :class:`PrometheusHook`).

Label values stay bounded: ``policy`` is a policy's name (the policies a program
defines), ``kind`` one of the policy's classes, ``state`` one of three, ``store`` a
store's kind; ``host`` comes from the breakers (one per host a policy calls) and is
capped at ``max_hosts`` values, hosts past the cap sharing the value ``"other"``.

Needs ``prometheus_client``: ``pip install 'retrypolicy[prometheus]'``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised with the module hidden
    msg = (
        "retrypolicy.instrumentation.prometheus needs prometheus_client, which is not "
        "installed; install the extra: pip install 'retrypolicy[prometheus]'"
    )
    raise ImportError(msg, name=__name__) from exc

from .. import stores
from .._events import (
    ATTEMPT,
    GAVE_UP,
    LIMITER_RATE_CHANGED,
    RATE_LIMIT_PERSISTENT,
    SCHEDULED,
    SUCCEEDED,
)
from .._runtime import RUNTIME as _RUNTIME
from . import _hooks

if TYPE_CHECKING:
    from .._events import RetryEvent
    from .._policy import Policy
    from ..stores import Store

__all__ = ["BREAKER_STATES", "WAIT_BUCKETS", "PrometheusHook", "install"]

WAIT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
"""Upper bounds (seconds) of the wait histogram: the EU GPT backoff runs 0.5 s to 8 s
(20 s for 429s), and ``Retry-After`` hints are honoured up to ``max_retry_after``."""

BREAKER_STATES: Final[Mapping[str, int]] = {"closed": 0, "half_open": 1, "open": 2}
"""The value of the ``breaker_state`` gauge for each state: ordered by severity, so
``max by (policy) (retrypolicy_breaker_state) == 2`` means "some host is cut off"."""

OTHER_HOST: Final = "other"
"""The ``host`` label of every host past ``max_hosts``."""


class PrometheusHook:
    """A retry hook that keeps Prometheus metrics (names below with the default namespace).

    Counters, labelled ``policy`` and ``kind`` (the failure's class):

    - ``retrypolicy_failed_attempts_total``: attempts that failed (each retry and
      each give-up has one);
    - ``retrypolicy_retries_total``: retries scheduled (``retry.scheduled``);
    - ``retrypolicy_give_ups_total``: failures handed to the caller
      (``retry.gave_up``; a non-retryable 400 is a give-up at attempt 1).

    Per ``policy``: ``retrypolicy_successes_after_retry_total`` (``retry.succeeded``);
    ``retrypolicy_attempts_total``, every attempt started, which needs the hook also
    passed as ``before_attempt=`` (the process-wide hooks never see attempts, so
    that the success path stays free); ``retrypolicy_retry_wait_seconds``, a histogram
    of the waits before retries (labels ``policy``, ``kind``).

    Storm protection: ``retrypolicy_budget_level`` (tokens, read at the scrape),
    ``retrypolicy_budget_capacity``, ``retrypolicy_budget_exhausted`` (1 while the
    budget refuses retries) and ``retrypolicy_budget_exhaustions_total``;
    ``retrypolicy_breaker_state`` (labels ``policy``, ``host``; 0 closed, 1 half-open,
    2 open: :data:`BREAKER_STATES`) and ``retrypolicy_breaker_transitions_total``
    (labels ``policy``, ``host``, ``state``: the state entered);
    ``retrypolicy_limiter_rate`` (requests per second the adaptive limiter paces at,
    0 while it does not pace; read at the scrape; ``policy``) and
    ``retrypolicy_rate_limit_persistent_total``;
    ``retrypolicy_store_unavailable_total`` and ``retrypolicy_store_up`` (labels
    ``policy``, ``store``).

    Args:
        registry: where the metrics are registered; ``prometheus_client.REGISTRY``
            by default. One hook per registry and namespace: a second one raises
            prometheus_client's ``ValueError`` (duplicated timeseries); use
            :func:`install`, which reuses the hook already installed.
        namespace: the prefix of every metric name.
        max_hosts: how many distinct ``host`` label values the breaker metrics use;
            later hosts are reported as ``"other"``.
        store: the store whose budget and limiter the gauges read. Unless given: the
            store the policy's call paths use (``store=``), when they all use one; else
            the default store.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "retrypolicy",
        max_hosts: int = 100,
        store: Store | None = None,
    ) -> None:
        if store is not None and not isinstance(store, stores.Store):
            raise TypeError(f"store {store!r}: expected a retrypolicy.stores.Store or None")
        self.store = store
        if isinstance(max_hosts, bool) or not isinstance(max_hosts, int) or max_hosts < 1:
            raise ValueError(f"max_hosts: expected a whole number >= 1, got {max_hosts!r}")
        self.registry = prometheus_client.REGISTRY if registry is None else registry
        self.namespace = namespace
        self.max_hosts = max_hosts
        self._hosts: set[str] = set()
        self._hosts_lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        """The policies seen in events, by name: whose budget and limiter a scrape reads."""
        self._last: dict[tuple[str, str], float] = {}
        """The level / rate each policy's last storm event reported (if a read fails)."""
        pk = ("policy", "kind")

        def counter(name: str, doc: str, labels: tuple[str, ...] = ("policy",)) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, registry=self.registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, doc, labels, namespace=namespace, registry=self.registry)

        self.failed_attempts = counter(
            "failed_attempts", "Attempts that failed, by failure kind.", pk
        )
        self.retries = counter(
            "retries", "Retries scheduled, by the kind of the failure retried.", pk
        )
        self.give_ups = counter("give_ups", "Failures handed to the caller, by kind.", pk)
        self.successes_after_retry = counter(
            "successes_after_retry", "Calls that succeeded after at least one retry."
        )
        self.attempts = counter(
            "attempts", "Attempts started (needs the hook as before_attempt too)."
        )
        self.waits = Histogram(
            "retry_wait_seconds",
            "Seconds waited before a retry.",
            pk,
            namespace=namespace,
            registry=self.registry,
            buckets=WAIT_BUCKETS,
        )
        self.budget_exhaustions = counter("budget_exhaustions", "Times the retry budget ran dry.")
        self.breaker_state = gauge(
            "breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ("policy", "host"),
        )
        self.breaker_transitions = counter(
            "breaker_transitions",
            "Circuit breaker state changes, by the state entered.",
            ("policy", "host", "state"),
        )
        self.rate_limit_persistent = counter(
            "rate_limit_persistent", "Times 429s were found persistent (slow down)."
        )
        self.store_unavailable = counter(
            "store_unavailable", "Times a shared store could not be reached.", ("policy", "store")
        )
        self.live = _LiveState(self)
        self.registry.register(self.live)
        self.store_up = gauge(
            "store_up",
            "1 while the store answers, 0 after it failed until it recovers.",
            ("policy", "store"),
        )

    def __repr__(self) -> str:
        return f"PrometheusHook(namespace={self.namespace!r})"

    def __call__(self, event: RetryEvent, /) -> None:
        """Update the metrics the event concerns (unknown events are ignored)."""
        name = event.name
        policy = event.policy.name
        self._policies[policy] = event.policy
        if name in (SCHEDULED, GAVE_UP):
            kind = "unknown" if event.kind is None else str(event.kind)
            self.failed_attempts.labels(policy, kind).inc()
            if name == SCHEDULED:
                self.retries.labels(policy, kind).inc()
                self.waits.labels(policy, kind).observe(event.delay)
            else:
                self.give_ups.labels(policy, kind).inc()
        elif name == SUCCEEDED:
            self.successes_after_retry.labels(policy).inc()
        elif name == ATTEMPT:
            self.attempts.labels(policy).inc()
        else:
            self._storm(name, policy, event.extra)

    def _storm(self, name: str, policy: str, extra: Mapping[str, object]) -> None:
        family, _, what = name.partition(".")
        if family == "budget":
            # "tokens": the level ("level" in a hand-built event of an earlier release)
            for key, got in (("level", "tokens"), ("level", "level"), ("capacity", "capacity")):
                if (value := _number(extra.get(got))) is not None:
                    self._last[policy, key] = value
            if what == "exhausted":
                self._last[policy, "exhausted"] = 1.0
                self.budget_exhaustions.labels(policy).inc()
            elif what == "recovered":
                self._last[policy, "exhausted"] = 0.0
        elif family == "breaker":
            state = extra.get("state")
            if not isinstance(state, str) or state not in BREAKER_STATES:
                state = {"opened": "open", "half_open": "half_open", "closed": "closed"}.get(what)
            if state is None:
                return
            host = self._host(extra.get("host"))
            self.breaker_state.labels(policy, host).set(BREAKER_STATES[state])
            self.breaker_transitions.labels(policy, host, state).inc()
        elif name == LIMITER_RATE_CHANGED:
            rate = _number(extra.get("rate"))
            if rate is not None:
                self._last[policy, "rate"] = rate
        elif name == RATE_LIMIT_PERSISTENT:
            self.rate_limit_persistent.labels(policy).inc()
        elif family == "store":
            store = str(extra.get("store", "unknown"))[:64]
            if what == "unavailable":
                self.store_unavailable.labels(policy, store).inc()
                self.store_up.labels(policy, store).set(0)
            elif what == "recovered":
                self.store_up.labels(policy, store).set(1)

    def store_of(self, policy: Policy) -> Store:
        """The store whose state the gauges of *policy* show (see the class docstring)."""
        if self.store is not None:
            return self.store
        used: dict[int, Store] = {
            id(guard.store): guard.store
            for guard in list(_RUNTIME.guards.values())
            if guard.name == policy.name
        }
        if len(used) == 1:
            return next(iter(used.values()))
        return stores.get_default_store()

    def _host(self, value: object) -> str:
        """The ``host`` label for *value*: itself while fewer than ``max_hosts`` were seen."""
        host = str(value) if value is not None else "unknown"
        if host in self._hosts:
            return host
        with self._hosts_lock:
            if host in self._hosts:
                return host
            if len(self._hosts) >= self.max_hosts:
                return OTHER_HOST
            self._hosts.add(host)
            return host


class _LiveState(Collector):
    """The budget's and the limiter's gauges, as they are at the scrape.

    A budget's level changes with every retry, success and second, a limiter's rate
    with every second, not only at their events; so they are read when Prometheus
    asks: ``retrypolicy.stores.stats(policy, store=...)`` for each policy seen in an
    event, in the store :meth:`PrometheusHook.store_of` names (with a ``RedisStore``,
    the fleet's shared state). A read only reads; one that fails reports what the
    policy's last storm events said.
    """

    FAMILIES: Final = (
        ("budget_level", "level", "Tokens in the retry budget."),
        ("budget_capacity", "capacity", "Tokens in a full retry budget."),
        ("budget_exhausted", "exhausted", "1 while the retry budget refuses retries, else 0."),
        ("limiter_rate", "rate", "Requests/s the adaptive limiter paces at (0: not pacing)."),
    )

    def __init__(self, hook: PrometheusHook) -> None:
        self._hook = hook

    def _families(self) -> dict[str, GaugeMetricFamily]:
        ns = self._hook.namespace
        return {
            key: GaugeMetricFamily(f"{ns}_{name}", doc, labels=["policy"])
            for name, key, doc in self.FAMILIES
        }

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so that a duplicate name is refused at once."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """Read each known policy's budget and limiter."""
        families = self._families()
        hook = self._hook
        for name, policy in sorted(hook._policies.items()):
            values: dict[str, float | None]
            try:
                snap = stores.stats(policy, store=hook.store_of(policy))
            except Exception:  # noqa: BLE001 - a scrape must not fail for one policy
                values = {key: hook._last.get((name, key)) for key in families}
            else:
                values = {
                    "level": snap.budget_level,
                    "capacity": snap.budget_capacity,
                    "exhausted": None
                    if snap.budget_level is None
                    else float(snap.budget_exhausted),
                    "rate": snap.limiter_rate,
                }
            for key, value in values.items():
                if value is not None:
                    families[key].add_metric([name], value)
        yield from families.values()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


_install_lock = threading.Lock()


def install(
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "retrypolicy",
    max_hosts: int = 100,
    store: Store | None = None,
) -> PrometheusHook:
    """Add a :class:`PrometheusHook` to the process-wide hooks, and return it.

    Idempotent: when a hook for the same registry and namespace is installed
    already, that one is returned and nothing changes. Remove it with
    ``set_hooks([h for h in get_hooks() if h is not hook])``.
    """
    target = prometheus_client.REGISTRY if registry is None else registry
    with _install_lock:
        for hook in _hooks.get_hooks():
            if (
                isinstance(hook, PrometheusHook)
                and hook.registry is target
                and hook.namespace == namespace
            ):
                return hook
        hook = PrometheusHook(target, namespace=namespace, max_hosts=max_hosts, store=store)
        _hooks.set_hooks([*_hooks.get_hooks(), hook])
        return hook
