"""A store in Redis: one budget, limiter and breaker for a whole fleet of workers.

Each step is one Lua script (``register_script``: EVALSHA, loaded again by the
client when the server forgot it), so it is atomic on the server: the same
transition as :mod:`retrypolicy._budget` / ``_limiter`` / ``_breaker``, written
a second time in Lua — the parametrised store tests hold the two to the same
results. A hash per key, under ``<prefix>:<policy>:...``, with a TTL refreshed
by every step (``PEXPIRE``): a budget nobody touched refills to full anyway,
a breaker nobody touched would be closed, so a key that vanished is right.
Numbers travel as ``%.17g`` strings (Redis turns Lua numbers into integers).

When Redis cannot be reached (or answers with an error), the step is applied to
an in-process fallback store instead, ``store.unavailable`` is reported once
per outage, and Redis is tried again at most every ``retry_every`` seconds (of
the callers' clock); when it answers, ``store.recovered`` is reported and the
shared state is used again. A caller never sees the exception.

``redis`` is imported only here, and only when a :class:`RedisStore` is built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from .._breaker import BreakerOp, BreakerResult, CircuitBreaker, breaker_ttl
from .._budget import BudgetResult, RetryBudget, budget_ttl
from .._limiter import AdaptiveLimiter, LimiterOp, LimiterResult, limiter_ttl
from .._redact import redact
from ._base import InProcessStore

__all__ = ["RedisStore"]

T = TypeVar("T")

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
  'reported', 'sent', 'throttled'}
local v = redis.call('HMGET', KEYS[1], unpack(names))
local active, rate, w_max, slot, last_cut, last_seen, consecutive, reported, sent, throttled =
  0, 0, 0, 0, 0, 0, 0, -1e18, 0, 0
if v[1] then
  active, rate, w_max, slot = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) or 0, tonumber(v[4])
  last_cut, last_seen = tonumber(v[5]), tonumber(v[6])
  consecutive, reported = tonumber(v[7]), tonumber(v[8])
  sent, throttled = tonumber(v[9]) or 0, tonumber(v[10]) or 0
end
local f = '%.17g'
local function save()
  redis.call('HSET', KEYS[1], 'active', active, 'rate', string.format(f, rate),
    'w_max', string.format(f, w_max), 'slot', string.format(f, slot),
    'last_cut', string.format(f, last_cut), 'last_seen', string.format(f, last_seen),
    'consecutive', consecutive, 'reported', string.format(f, reported),
    'sent', sent, 'throttled', throttled)
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
local function out(wait, r, previous, act, changed, cons, persistent, report)
  return {string.format(f, wait), string.format(f, r), string.format(f, previous), act, changed,
    cons, persistent, report}
end
if active == 1 and now - last_seen >= idle then
  local previous = grown()
  active, rate, w_max, slot, sent, throttled = 0, 0, 0, 0, 0, 0
  if op ~= 'throttled' then
    save()
    return out(0, 0, previous, 0, 1, consecutive, 0, 0)
  end
end
local persistent = 0
if consecutive >= persist_after then persistent = 1 end
if op == 'acquire' then
  if active == 0 then return out(0, 0, 0, 0, 0, consecutive, persistent, 0) end
  local r = grown()
  local start = math.max(slot, now)
  slot, sent = start + 1.0 / r, sent + 1
  save()
  return out(start - now, r, 0, 1, 0, consecutive, persistent, 0)
end
if op == 'answered' then
  if consecutive ~= 0 then consecutive = 0; save() end
  local r = 0
  if active == 1 then r = grown() end
  return out(0, r, 0, active, 0, 0, 0, 0)
end
if op == 'read' then
  local r = 0
  if active == 1 then r = grown() end
  return out(0, r, 0, active, 0, consecutive, persistent, 0)
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
  local pending = math.floor(math.max(0, slot - now) * previous)
  local elapsed = now - last_cut
  local accepted = math.max(0, sent - pending - throttled - 1)
  local served = previous
  if elapsed > 0 then served = accepted / elapsed end
  local top
  if w_max > 0 or throttled > 0 then
    top = math.min(previous, served)
  else
    top = math.min(previous, math.max(served, previous * decrease))
  end
  rate = math.max(min_rate, top * decrease)
  w_max, slot, last_cut, sent, throttled = top, math.max(slot, now + 1.0 / rate), now, pending, 0
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


class RedisStore:
    """Budgets, limiters and breakers shared through Redis by every process that uses it.

    ``client`` is a ``redis.Redis`` (sync; its own timeouts apply); keys go
    under ``prefix``. ``retry_every`` is how often, in seconds, Redis is tried
    again while it is unavailable (meanwhile an in-process fallback answers).
    """

    shared = True

    def __init__(
        self, client: Any, prefix: str = "retrypolicy", *, retry_every: float = 5.0
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            msg = f"prefix {prefix!r}: expected a non-empty string"
            raise ValueError(msg)
        if not hasattr(client, "register_script"):
            msg = f"client {client!r}: expected a redis.Redis client"
            raise TypeError(msg)
        self.client = client
        self.prefix = prefix
        self.retry_every = float(retry_every)
        self._budget = client.register_script(_BUDGET)
        self._limiter = client.register_script(_LIMITER)
        self._breaker = client.register_script(_BREAKER)
        self.fallback = InProcessStore()
        """Where steps go while Redis is unavailable."""
        self._lock = threading.Lock()
        self._down = False
        self._next_probe = 0.0

    def __repr__(self) -> str:
        return f"<RedisStore prefix={self.prefix!r}{' unavailable' if self._down else ''}>"

    @property
    def available(self) -> bool:
        """False while Redis is considered unreachable (the fallback answers)."""
        return not self._down

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _run(
        self, now: float, remote: Callable[[], T], local: Callable[[], T]
    ) -> tuple[T, tuple[str, str] | None]:
        """*remote* when Redis answers, else *local*; and the outage news, if any."""
        if self._down and now < self._next_probe:
            return local(), None
        try:
            value = remote()
        except Exception as exc:  # noqa: BLE001 - any failure of the store: fall back, never raise
            with self._lock:
                first = not self._down
                self._down = True
                self._next_probe = now + self.retry_every
            error = redact(f"{type(exc).__name__}: {exc}")[:_MAX_ERROR]
            return local(), (("store.unavailable", error) if first else None)
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:  # the shared state is the truth again: the next outage starts afresh
            self.fallback.clear()
        return value, (("store.recovered", "") if was_down else None)

    def budget(self, key: str, config: RetryBudget, now: float, delta: float) -> BudgetResult:
        """See :meth:`retrypolicy.stores.Store.budget`."""

        def remote() -> BudgetResult:
            ok, level, event = self._budget(
                keys=[self._key(key)],
                args=[
                    _num(config.capacity),
                    _num(config.refill_rate),
                    _num(now),
                    _num(delta),
                    int(budget_ttl(config) * 1000),
                ],
            )
            return BudgetResult(bool(int(ok)), float(_text(level)), config.capacity, _text(event))

        result, notice = self._run(
            now, remote, lambda: self.fallback.budget(key, config, now, delta)
        )
        return result if notice is None else _with(result, notice)

    def limiter(
        self, key: str, config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float = 0.0
    ) -> LimiterResult:
        """See :meth:`retrypolicy.stores.Store.limiter`."""

        def remote() -> LimiterResult:
            wait, rate, previous, active, changed, cons, persistent, report = self._limiter(
                keys=[self._key(key)],
                args=[
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
                ],
            )
            return LimiterResult(
                wait=float(_text(wait)),
                rate=float(_text(rate)),
                previous=float(_text(previous)),
                active=bool(int(active)),
                changed=bool(int(changed)),
                consecutive=int(cons),
                persistent=bool(int(persistent)),
                report=bool(int(report)),
            )

        result, notice = self._run(
            now, remote, lambda: self.fallback.limiter(key, config, now, op, measured)
        )
        return result if notice is None else _with(result, notice)

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

        def remote() -> BreakerResult:
            state, allowed, retry_in, nfail, total, event = self._breaker(
                keys=[self._key(key)],
                args=[
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
                ],
            )
            return BreakerResult(
                state=_text(state),  # type: ignore[arg-type] # the script writes only the three
                allowed=bool(int(allowed)),
                retry_in=float(_text(retry_in)),
                failures=int(nfail),
                total=int(total),
                event=_text(event),
            )

        result, notice = self._run(
            now,
            remote,
            lambda: self.fallback.breaker(
                key, config, now, op, failures=failures, successes=successes
            ),
        )
        return result if notice is None else _with(result, notice)

    def breaker_keys(self, prefix: str) -> list[str]:
        """The keys of the breakers starting with *prefix* (for stats); [] when unreachable."""
        try:
            found = self.client.scan_iter(match=self._key(prefix) + "*", count=500)
            cut = len(self.prefix) + 1
            return sorted({_text(k)[cut:] for k in found})
        except Exception:  # noqa: BLE001 - stats never raise
            return self.fallback.breaker_keys(prefix)


R = TypeVar("R", BudgetResult, LimiterResult, BreakerResult)


def _with(result: R, notice: tuple[str, str]) -> R:
    import attrs  # noqa: PLC0415 - only on an outage's first and last step

    return attrs.evolve(result, notice=notice)
