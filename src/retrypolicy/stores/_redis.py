"""A store in Redis: one budget, limiter and breaker for a whole fleet of workers.

Each step is one Lua script (``register_script``: EVALSHA, loaded again by the
client when the server forgot it), so it is atomic on the server: the same
transition as :mod:`retrypolicy._budget` / ``_limiter`` / ``_breaker``, written
a second time in Lua — the parametrised store tests hold the two to the same
results. A hash per key, under ``<prefix>:<policy>:...``, with a TTL refreshed
by every step (``PEXPIRE``): a budget nobody touched refills to full anyway,
a breaker nobody touched would be closed, so a key that vanished is right.
Numbers travel as ``%.17g`` strings (Redis turns Lua numbers into integers).

Every step has a sync method (``budget``...) and a coroutine twin (``abudget``...)
sending the same script: the sync one through ``redis.Redis``, the async one
through ``redis.asyncio`` (:mod:`._clients`), so an event loop never waits on a
socket.

When Redis cannot be reached (or answers with an error), the step is applied to
an in-process fallback store instead and ``store.unavailable`` is reported once
per outage. Until the next probe — ``retry_every`` seconds (of the callers' clock)
after the failed round trip *ended* — nobody touches the network; then one caller
probes while the others stay local (:mod:`._gate`). When the probe answers,
``store.recovered`` is reported and the shared state is used again. A caller
never sees the exception.

``redis`` is imported only here and in ``_clients``, and only when a
:class:`RedisStore` is built.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias, TypeVar

import attrs

from .._breaker import BreakerOp, BreakerResult, CircuitBreaker, breaker_ttl
from .._budget import BudgetResult, RetryBudget, budget_ttl
from .._limiter import AdaptiveLimiter, LimiterOp, LimiterResult, limiter_ttl
from .._redact import error_text
from ._base import InProcessStore
from ._clients import (
    LoopClients,
    async_factory_from_client,
    async_factory_from_url,
    check_seconds,
    is_async_client,
    sync_client_from_url,
)
from ._gate import OutageGate

__all__ = ["RedisStore"]

R = TypeVar("R", BudgetResult, LimiterResult, BreakerResult)
Reader: TypeAlias = Callable[[Any], R]
"""What a script's reply reads as."""
Local: TypeAlias = Callable[[], R]
"""The fallback's answer to the same step."""
Call: TypeAlias = tuple[int, str, list[Any]]
"""A script's round trip: its index in :data:`_SCRIPTS`, its key, its ARGV."""

_MAX_ERROR: Final = 200

_BUDGET: Final = """
local cap, refill, now, delta, ttl =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'level', 'stamp', 'exhausted')
local level, exhausted, stamp = cap, 0, now
if v[1] then
  local elapsed = now - tonumber(v[2])
  if elapsed < 0 then elapsed = 0; stamp = tonumber(v[2]) end
  level = math.min(cap, tonumber(v[1]) + refill * elapsed)
  exhausted = tonumber(v[3])
end
local ok, event = 1, ''
if delta > 0 then level = math.min(cap, level + delta) end
if exhausted == 1 and level >= cap / 2 then exhausted = 0; event = 'recovered' end
if delta < 0 then
  if level + delta >= 0 then
    level = level + delta
  else
    ok = 0
    if exhausted == 0 then exhausted = 1; event = 'exhausted' end
  end
end
local f = '%.17g'
redis.call('HSET', KEYS[1], 'level', string.format(f, level), 'stamp', string.format(f, stamp),
  'exhausted', exhausted)
redis.call('PEXPIRE', KEYS[1], ttl)
return {ok, string.format(f, level), event}
"""

_LIMITER: Final = """
local decrease, increase, min_rate, initial = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])
local cooldown, idle, persist_after, window = tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(ARGV[7]), tonumber(ARGV[8])
local now, op, measured, ttl = tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local names = {'active', 'rate', 'w_max', 'slot', 'last_cut', 'last_seen', 'consecutive',
  'reported', 'sent', 'throttled', 'held'}
local v = redis.call('HMGET', KEYS[1], unpack(names))
local active, rate, w_max, slot, last_cut, last_seen, consecutive, reported, sent, throttled =
  0, 0, 0, 0, 0, 0, 0, -1e18, 0, 0
local held = 0
if v[1] then
  active, rate, w_max, slot = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) or 0, tonumber(v[4])
  last_cut, last_seen = tonumber(v[5]), tonumber(v[6])
  consecutive, reported = tonumber(v[7]), tonumber(v[8])
  sent, throttled, held = tonumber(v[9]) or 0, tonumber(v[10]) or 0, tonumber(v[11]) or 0
end
local f = '%.17g'
local function save()
  redis.call('HSET', KEYS[1], 'active', active, 'rate', string.format(f, rate),
    'w_max', string.format(f, w_max), 'slot', string.format(f, slot),
    'last_cut', string.format(f, last_cut), 'last_seen', string.format(f, last_seen),
    'consecutive', consecutive, 'reported', string.format(f, reported),
    'sent', sent, 'throttled', throttled, 'held', held)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local function grown()
  if increase <= 0 then return rate end
  local top = math.max(w_max, rate)
  local k = ((top - rate) / (increase * top)) ^ (1.0 / 3.0)
  local e = now - last_cut
  if e < 0 then e = 0 end
  local d = e - k
  return top * (1.0 + increase * d * d * d)
end
local function out(wait, r, previous, act, changed, cons, persistent, report, epoch)
  return {string.format(f, wait), string.format(f, r), string.format(f, previous), act, changed,
    cons, persistent, report, string.format(f, epoch or 0)}
end
if active == 1 and now - last_seen >= idle then
  local previous = grown()
  active, rate, w_max, slot, sent, throttled, held = 0, 0, 0, 0, 0, 0, 0
  if op ~= 'throttled' then
    save()
    return out(0, 0, previous, 0, 1, consecutive, 0, 0)
  end
end
local persistent = 0
if consecutive >= persist_after then persistent = 1 end
if op == 'confirm' and active == 1 and last_cut == measured then
  if held > 0 then held = held - 1; save() end
  return out(0, grown(), 0, 1, 0, consecutive, persistent, 0, measured)
end
if op == 'acquire' or op == 'confirm' then
  if active == 0 then return out(0, 0, 0, 0, 0, consecutive, persistent, 0) end
  local r = grown()
  local start = math.max(slot, now)
  slot = start + 1.0 / r
  if op == 'acquire' then sent = sent + 1 end
  if start > now then held = held + 1 end
  if op == 'confirm' then held = held - 1 end
  if held < 0 then held = 0 end
  save()
  return out(start - now, r, 0, 1, 0, consecutive, persistent, 0, last_cut)
end
if op == 'answered' or op == 'read' then
  local r = 0
  if active == 1 then r = grown() end
  if op == 'read' then return out(0, r, 0, active, 0, consecutive, persistent, 0) end
  if consecutive ~= 0 then consecutive = 0; save() end
  return out(0, r, 0, active, 0, 0, 0, 0)
end
consecutive = consecutive + 1
local changed, previous, r = 0, 0, 0
if active == 1 then previous = grown() end
if active == 0 then
  local start = measured * decrease
  if initial >= 0 then start = initial end
  rate = math.max(min_rate, start)
  active, w_max, slot, last_cut, sent, throttled = 1, 0, now + 1.0 / rate, now, 0, 0
  r, changed = rate, 1
elseif now - last_cut >= cooldown then
  local pending = math.min(held, math.floor(math.max(0, slot - now) * previous))
  local elapsed = now - last_cut
  local accepted = math.max(0, sent - pending - throttled - 1)
  local served = previous
  if elapsed > 0 then served = accepted / elapsed end
  local top
  if w_max > 0 and throttled == 0 and previous >= w_max * 1.2 then
    top = math.min(previous, math.max(served, w_max))
  elseif w_max > 0 or throttled > 0 then
    top = math.min(previous, served)
  else
    top = math.min(previous, math.max(served, previous * decrease))
  end
  rate = math.max(min_rate, top * decrease)
  w_max, slot, last_cut, sent, throttled = top, now + 1.0 / rate, now, pending, 0
  r = rate
  if rate ~= previous then changed = 1 end
else
  r = previous
  if now - last_cut >= 1.0 / rate then throttled = throttled + 1 end
end
persistent = 0
if consecutive >= persist_after then persistent = 1 end
local report = 0
if persistent == 1 and now - reported >= window then report = 1; reported = now end
last_seen = now
save()
return out(0, r, previous, 1, changed, consecutive, persistent, report)
"""

_BREAKER: Final = """
local rate_limit, min_calls, window, open_for, probes_max = tonumber(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now, op, nfail, nok, ttl = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]),
  tonumber(ARGV[9]), tonumber(ARGV[10])
local v = redis.call('HMGET', KEYS[1], 'state', 'failures', 'total', 'window_start', 'until',
  'probes')
local state, failures, total, wstart, till, probes = 'closed', 0, 0, now, 0, 0
if v[1] then
  state, failures, total = v[1], tonumber(v[2]), tonumber(v[3])
  wstart, till, probes = tonumber(v[4]), tonumber(v[5]), tonumber(v[6])
end
local f = '%.17g'
local function save()
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'total', total,
    'window_start', string.format(f, wstart), 'until', string.format(f, till), 'probes', probes)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local function out(allowed, event)
  local retry_in = 0
  if state ~= 'closed' then retry_in = math.max(0, till - now) end
  return {state, allowed, string.format(f, retry_in), failures, total, event}
end
if op == 'read' then return out(1, '') end
if op == 'allow' then
  if state == 'closed' then return out(1, '') end
  if state == 'open' then
    if now < till then return out(0, '') end
    state, till, probes = 'half_open', now + open_for, 1
    save()
    return out(1, 'half_open')
  end
  if probes < probes_max then probes = probes + 1; save(); return out(1, '') end
  if now >= till then probes, till = 1, now + open_for; save(); return out(1, '') end
  return out(0, '')
end
if state == 'open' then return out(1, '') end
if state == 'half_open' then
  if nfail > 0 then
    state, failures, total, wstart, till, probes = 'open', 0, 0, now, now + open_for, 0
    save()
    return out(1, 'opened')
  end
  if nok > 0 then
    state, failures, total, wstart, till, probes = 'closed', 0, 0, now, 0, 0
    save()
    return out(1, 'closed')
  end
  return out(1, '')
end
if now - wstart >= window then
  state, failures, total, wstart, till, probes = 'closed', 0, 0, now, 0, 0
end
total = total + nfail + nok
failures = failures + nfail
if nfail > 0 and total >= min_calls and failures >= rate_limit * total then
  state, till, probes = 'open', now + open_for, 0
  save()
  return out(1, 'opened')
end
save()
return out(1, '')
"""


def _num(value: float) -> str:
    return repr(float(value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# What each script is sent and how its reply reads: one place for the sync and asyncio paths.


def _budget_args(config: RetryBudget, now: float, delta: float) -> list[Any]:
    ttl = int(budget_ttl(config) * 1000)
    return [_num(config.capacity), _num(config.refill_rate), _num(now), _num(delta), ttl]


def _budget_reply(config: RetryBudget, reply: Any) -> BudgetResult:
    ok, level, event = reply
    return BudgetResult(bool(int(ok)), float(_text(level)), config.capacity, _text(event))


def _limiter_args(config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float) -> list[Any]:
    return [
        _num(config.decrease),
        _num(config.increase),
        _num(config.min_rate),
        _num(-1.0 if config.initial_rate is None else config.initial_rate),
        _num(config.cooldown),
        _num(config.idle_reset),
        config.persist_after,
        _num(config.persist_window),
        _num(now),
        op,
        _num(measured),
        int(limiter_ttl(config) * 1000),
    ]


def _limiter_reply(reply: Any) -> LimiterResult:
    wait, rate, previous, active, changed, cons, persistent, report, epoch = reply
    return LimiterResult(
        wait=float(_text(wait)),
        rate=float(_text(rate)),
        previous=float(_text(previous)),
        active=bool(int(active)),
        changed=bool(int(changed)),
        consecutive=int(cons),
        persistent=bool(int(persistent)),
        report=bool(int(report)),
        epoch=float(_text(epoch)),
    )


def _breaker_args(
    config: CircuitBreaker, now: float, op: BreakerOp, failures: int, successes: int
) -> list[Any]:
    return [
        _num(config.failure_rate),
        config.min_calls,
        _num(config.window),
        _num(config.open_for),
        config.half_open_probes,
        _num(now),
        op,
        failures,
        successes,
        int(breaker_ttl(config) * 1000),
    ]


def _breaker_reply(reply: Any) -> BreakerResult:
    state, allowed, retry_in, nfail, total, event = reply
    return BreakerResult(
        state=_text(state),  # type: ignore[arg-type] # the script writes only the three
        allowed=bool(int(allowed)),
        retry_in=float(_text(retry_in)),
        failures=int(nfail),
        total=int(total),
        event=_text(event),
    )


class RedisStore:
    """Budgets, limiters and breakers shared through Redis by every process that uses it.

    Build it with :meth:`from_url` (bounded timeouts, redis-py's retries off, an
    asyncio client for async callers), or from your own ``redis.Redis`` *client*
    (its timeouts and retries apply; the asyncio path then uses *async_client*, or
    a ``redis.asyncio`` client reaching the same server, built per event loop).
    Keys go under *prefix*. *retry_every*: seconds between probes while Redis is
    unavailable (meanwhile the in-process fallback answers, and only the prober
    touches the network).
    """

    shared = True

    def __init__(
        self,
        client: Any,
        prefix: str = "retrypolicy",
        *,
        retry_every: float = 5.0,
        async_client: Any = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            msg = f"prefix {prefix!r}: expected a non-empty string"
            raise ValueError(msg)
        if not hasattr(client, "register_script") or is_async_client(client):
            msg = (
                f"client {client!r}: expected a redis.Redis client (a redis.asyncio client "
                "goes in async_client=, beside a sync one; or use RedisStore.from_url)"
            )
            raise TypeError(msg)
        if async_client is not None and not (
            hasattr(async_client, "register_script") and is_async_client(async_client)
        ):
            msg = f"async_client {async_client!r}: expected a redis.asyncio.Redis client"
            raise TypeError(msg)
        self.client = client
        self.prefix = prefix
        self._gate = OutageGate(check_seconds("retry_every", retry_every, zero=True, default=5.0))
        self._scripts = tuple(client.register_script(source) for source in _SCRIPTS)
        self._async = LoopClients(
            _SCRIPTS,
            factory=None if async_client is not None else async_factory_from_client(client),
            fixed=async_client,
        )
        self._owns_client = False
        self.fallback = InProcessStore()
        """Where steps go while Redis is unavailable."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "retrypolicy",
        timeout: float = 0.25,
        retry_every: float = 5.0,
        **options: Any,
    ) -> RedisStore:
        """A store on the Redis at *url* (``redis://host:6379/0``, ``rediss://…``,
        ``unix:///path.sock``) that never makes a caller wait on a dead Redis for longer
        than *timeout* seconds: connect and socket timeouts of *timeout*, redis-py's own
        retries off (the store's fallback and probe replace them), and a ``redis.asyncio``
        twin for async callers. *options* go to both clients (``max_connections``,
        ``ssl_ca_certs``, ``client_name``...). Nothing connects until the first step.
        """
        seconds = check_seconds("timeout", timeout, zero=False, default=0.25)
        client = sync_client_from_url(url, seconds, options)
        store = cls(client, prefix, retry_every=retry_every)
        store._async = LoopClients(_SCRIPTS, factory=async_factory_from_url(url, seconds, options))
        store._owns_client = True
        return store

    def __repr__(self) -> str:
        return f"<RedisStore prefix={self.prefix!r}{' unavailable' if self._gate.down else ''}>"

    @property
    def available(self) -> bool:
        """False while Redis is considered unreachable (the fallback answers)."""
        return not self._gate.down

    @property
    def retry_every(self) -> float:
        """Seconds from a failed round trip to the next probe."""
        return self._gate.retry_every

    @retry_every.setter
    def retry_every(self, value: float) -> None:
        self._gate.retry_every = check_seconds("retry_every", value, zero=True, default=5.0)

    def close(self) -> None:
        """Close the sync client if :meth:`from_url` built it (yours stay yours to close)."""
        if self._owns_client:
            self.client.close()

    async def aclose(self) -> None:
        """Close the running event loop's asyncio client, if the store built it (it is also
        closed when ``asyncio.run`` ends that loop)."""
        await self._async.aclose()

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _failed(self, probe: bool, ended: float, exc: Exception, local: Callable[[], R]) -> R:
        """A round trip failed at *ended*: the fallback answers, and says so on an outage's
        first step."""
        if not self._gate.failed(probe, ended):
            return local()
        error = error_text(exc, _MAX_ERROR)
        return attrs.evolve(local(), notice=("store.unavailable", error))

    def _answered(self, probe: bool, value: R) -> R:
        """Redis answered *value*; the probe that ends an outage says so."""
        if not self._gate.answered(probe):
            return value
        self.fallback.clear()  # the shared state is the truth again: the next outage starts afresh
        return attrs.evolve(value, notice=("store.recovered", ""))

    def _step(self, now: float, call: Call, read: Reader[R], local: Local[R]) -> R:
        """*call* (its reply *read*) when Redis may be asked and answers, else *local*; an
        outage's news (its start, its end) rides on the result as its ``notice``."""
        probe = self._gate.enter(now)
        if probe is None:
            return local()
        started = time.monotonic()
        script, key, args = call
        try:
            value = read(self._scripts[script](keys=[self._key(key)], args=args))
        except Exception as exc:  # noqa: BLE001 - any failure of the store: fall back, never raise
            return self._failed(probe, now + (time.monotonic() - started), exc, local)
        except BaseException:
            self._gate.abandoned(probe)
            raise
        return self._answered(probe, value)

    async def _astep(self, now: float, call: Call, read: Reader[R], local: Local[R]) -> R:
        """:meth:`_step` for the asyncio path: the same gate, the round trip awaited through
        the running loop's client."""
        probe = self._gate.enter(now)
        if probe is None:
            return local()
        started = time.monotonic()
        script, key, args = call
        try:
            _, scripts = await self._async.get()
            value = read(await scripts[script](keys=[self._key(key)], args=args))
        except Exception as exc:  # noqa: BLE001 - as above
            return self._failed(probe, now + (time.monotonic() - started), exc, local)
        except BaseException:  # cancelled: nothing learned, the probe is free again
            self._gate.abandoned(probe)
            raise
        return self._answered(probe, value)

    def budget(self, key: str, config: RetryBudget, now: float, delta: float) -> BudgetResult:
        """See :meth:`retrypolicy.stores.Store.budget`."""
        local = functools.partial(self.fallback.budget, key, config, now, delta)
        args, read = _budget_args(config, now, delta), functools.partial(_budget_reply, config)
        return self._step(now, (0, key, args), read, local)

    async def abudget(
        self, key: str, config: RetryBudget, now: float, delta: float
    ) -> BudgetResult:
        """:meth:`budget` through the asyncio client: the same script, fallback and probe."""
        local = functools.partial(self.fallback.budget, key, config, now, delta)
        args, read = _budget_args(config, now, delta), functools.partial(_budget_reply, config)
        return await self._astep(now, (0, key, args), read, local)

    def limiter(
        self, key: str, config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float = 0.0
    ) -> LimiterResult:
        """See :meth:`retrypolicy.stores.Store.limiter`."""
        local = functools.partial(self.fallback.limiter, key, config, now, op, measured)
        args = _limiter_args(config, now, op, measured)
        return self._step(now, (1, key, args), _limiter_reply, local)

    async def alimiter(
        self, key: str, config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float = 0.0
    ) -> LimiterResult:
        """:meth:`limiter` through the asyncio client."""
        local = functools.partial(self.fallback.limiter, key, config, now, op, measured)
        args = _limiter_args(config, now, op, measured)
        return await self._astep(now, (1, key, args), _limiter_reply, local)

    def breaker(
        self,
        key: str,
        config: CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        """See :meth:`retrypolicy.stores.Store.breaker`."""
        counts = {"failures": failures, "successes": successes}
        local = functools.partial(self.fallback.breaker, key, config, now, op, **counts)
        args = _breaker_args(config, now, op, failures, successes)
        return self._step(now, (2, key, args), _breaker_reply, local)

    async def abreaker(
        self,
        key: str,
        config: CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        """:meth:`breaker` through the asyncio client."""
        counts = {"failures": failures, "successes": successes}
        local = functools.partial(self.fallback.breaker, key, config, now, op, **counts)
        args = _breaker_args(config, now, op, failures, successes)
        return await self._astep(now, (2, key, args), _breaker_reply, local)

    def breaker_keys(self, prefix: str) -> list[str]:
        """The keys of the breakers starting with *prefix* (for stats). While Redis is
        unavailable, or when it fails, the fallback's: stats never wait on a dead Redis
        twice, and never raise."""
        if self._gate.down:
            return self.fallback.breaker_keys(prefix)
        try:
            return self._strip(self.client.scan_iter(match=self._key(prefix) + "*", count=500))
        except Exception:  # noqa: BLE001 - stats never raise
            return self.fallback.breaker_keys(prefix)

    async def abreaker_keys(self, prefix: str) -> list[str]:
        """:meth:`breaker_keys` through the asyncio client."""
        if self._gate.down:
            return self.fallback.breaker_keys(prefix)
        try:
            client, _ = await self._async.get()
            found = [k async for k in client.scan_iter(match=self._key(prefix) + "*", count=500)]
            return self._strip(found)
        except Exception:  # noqa: BLE001 - stats never raise
            return self.fallback.breaker_keys(prefix)

    def _strip(self, found: Iterable[Any]) -> list[str]:
        cut = len(self.prefix) + 1
        return sorted({_text(k)[cut:] for k in found})


_SCRIPTS: Final = (_BUDGET, _LIMITER, _BREAKER)
