"""``RedisLedger``: one ledger for workers on many machines, through one Redis server.

Every state change is one Lua script, so it is atomic on the server: a claim reads
and writes the job in one step, whatever other workers do. The scripts mirror the
rules of :mod:`._states` line by line.

State is kept without TTLs: a job's hash (``PREFIX:job:ID``) lives until you delete
it, so a result is never lost to an eviction timer; the *lease* expires by time —
its expiry is a field compared with the clock in the claim script. By default that
clock is the Redis server's own (``TIME``), so machines whose clocks disagree still
agree on when a lease ended; tests inject one (*clock*). Per-state sets
(``PREFIX:state:STATE``) make ``batch status`` cheap, and each owner's set of held
jobs (``PREFIX:owner:OWNER``) lets one script renew them all.

``redis`` is never imported here: you pass a client (``redis.Redis(...)``), so
``import retrypolicy.batch`` works without the package. A Redis Cluster needs every
key of a ledger in one slot: use a hash-tagged prefix such as ``"{batch}"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._ledger import LedgerBase, chunks
from ._model import FailureInfo, JobRecord, JobState, LedgerCounts, check_job_id

if TYPE_CHECKING:
    from .._policy import Policy
    from ..typing import Clock

__all__ = ["RedisLedger"]

_PRELUDE: Final = """
local p = ARGV[1]
local function now_of(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function move(id, from, to)
  if from then redis.call('SREM', p .. ':state:' .. from, id) end
  redis.call('SADD', p .. ':state:' .. to, id)
end
local function held(key, owner)  -- running, under owner's lease
  return redis.call('HGET', key, 'state') == 'running' and redis.call('HGET', key, 'owner') == owner
end
local FAILURE = {'kind', 'retryable', 'attempts', 'code', 'status', 'message'}
local function paid(key, attempts)  -- requests sent: per job, and ledger-wide
  local n = tonumber(attempts) or 0
  if n > 0 then
    if redis.call('HINCRBY', key, 'requests', n) == n then
      redis.call('HINCRBY', p .. ':cost', 'jobs', 1)
    end
    redis.call('HINCRBY', p .. ':cost', 'requests', n)
    redis.call('HINCRBY', p .. ':cost', 'retries', n - 1)
  end
end
local function leave(id, key, holder, from, to, now, attempts)  -- the lease ends: to `to`
  if holder then redis.call('SREM', p .. ':owner:' .. holder, id) end
  move(id, from, to)
  redis.call('HDEL', key, 'owner', 'expires')
  redis.call('HSET', key, 'state', to, 'updated', tostring(now_of(now)))
  paid(key, attempts)
end
"""

# Each script below runs after _PRELUDE (see RedisLedger.__init__).

# ARGV: prefix, id, owner, now, lease, steal_from
_CLAIM: Final = """
local id, owner = ARGV[2], ARGV[3]
local key = p .. ':job:' .. id
local now = now_of(ARGV[4])
local st = redis.call('HGET', key, 'state')
local take, took_over = false, 0
if (not st) or st == 'pending' then
  take = true
elseif st == 'failed' then
  take = redis.call('HGET', key, 'retryable') == '1'
elseif st == 'running' then
  local expires = tonumber(redis.call('HGET', key, 'expires') or '0') or 0
  local holder = redis.call('HGET', key, 'owner')
  take = expires <= now or (ARGV[6] ~= '' and holder == ARGV[6])
  if take and holder then redis.call('SREM', p .. ':owner:' .. holder, id) end
  if take then
    took_over = 1
    redis.call('HINCRBY', key, 'resent', 1)
    redis.call('HINCRBY', p .. ':cost', 'resent', 1)
  end
end
if take then
  move(id, st, 'running')
  redis.call('HDEL', key, 'result', unpack(FAILURE))
  redis.call('HSET', key, 'state', 'running', 'owner', owner,
             'expires', tostring(now + tonumber(ARGV[5])), 'updated', tostring(now))
  redis.call('HINCRBY', key, 'runs', 1)
  redis.call('SADD', p .. ':owner:' .. owner, id)
end
return {take and 1 or 0, redis.call('HGETALL', key), took_over}
"""

# ARGV: prefix, id, result, now, attempts
_FINISH: Final = """
local id = ARGV[2]
local key = p .. ':job:' .. id
local st = redis.call('HGET', key, 'state')
if st == 'done' then return 0 end
leave(id, key, redis.call('HGET', key, 'owner'), st, 'done', ARGV[4], ARGV[5])
redis.call('HDEL', key, unpack(FAILURE))
redis.call('HSET', key, 'result', ARGV[3], 'attempts', ARGV[5])
return 1
"""

# ARGV: prefix, id, owner, now, kind, retryable, attempts, code, status, message
_FAIL: Final = """
local id, owner = ARGV[2], ARGV[3]
local key = p .. ':job:' .. id
if not held(key, owner) then return 0 end
leave(id, key, owner, 'running', 'failed', ARGV[4], ARGV[7])
redis.call('HDEL', key, 'code', 'status')
redis.call('HSET', key, 'kind', ARGV[5], 'retryable', ARGV[6], 'attempts', ARGV[7],
           'message', ARGV[10])
if ARGV[8] ~= '' then redis.call('HSET', key, 'code', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', key, 'status', ARGV[9]) end
return 1
"""

# ARGV: prefix, id, owner, now, attempts
_RELEASE: Final = """
local id, owner = ARGV[2], ARGV[3]
local key = p .. ':job:' .. id
if not held(key, owner) then return 0 end
leave(id, key, owner, 'running', 'pending', ARGV[4], ARGV[5])
return 1
"""

# ARGV: prefix, now, number of kinds k, kinds (k), ids (none: every failed job)
_REQUEUE: Final = """
local now = tostring(now_of(ARGV[2]))
local k = tonumber(ARGV[3])
local kinds = {}
for i = 4, 3 + k do kinds[ARGV[i]] = true end
local ids = {}
if #ARGV > 3 + k then
  for i = 4 + k, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('SMEMBERS', p .. ':state:failed')
end
local n = 0
for _, id in ipairs(ids) do
  local key = p .. ':job:' .. id
  local st, kind = unpack(redis.call('HMGET', key, 'state', 'kind'))
  if st == 'failed' and (k == 0 or kinds[kind]) then
    move(id, 'failed', 'pending')
    redis.call('HDEL', key, unpack(FAILURE))
    redis.call('HSET', key, 'state', 'pending', 'updated', now)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, owner, now, lease
_RENEW: Final = """
local owner = ARGV[2]
local expires = tostring(now_of(ARGV[3]) + tonumber(ARGV[4]))
local held = p .. ':owner:' .. owner
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', held)) do
  local key = p .. ':job:' .. id
  local st, holder = unpack(redis.call('HMGET', key, 'state', 'owner'))
  if st == 'running' and holder == owner then
    redis.call('HSET', key, 'expires', expires)
    n = n + 1
  else
    redis.call('SREM', held, id)
  end
end
return n
"""

# ARGV: prefix, now, id...
_ADD: Final = """
local now = tostring(now_of(ARGV[2]))
local n = 0
for i = 3, #ARGV do
  local key = p .. ':job:' .. ARGV[i]
  if redis.call('HSETNX', key, 'state', 'pending') == 1 then
    redis.call('HSET', key, 'updated', now, 'runs', 0)
    redis.call('SADD', p .. ':state:pending', ARGV[i])
    n = n + 1
  end
end
return n
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(job_id: str, flat: list[Any] | dict[Any, Any]) -> JobRecord:
    pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
    fields = {_text(k): _text(v) for k, v in pairs}
    failure = None
    if "kind" in fields:
        failure = FailureInfo(
            kind=fields["kind"],
            retryable=fields.get("retryable") == "1",
            attempts=int(fields.get("attempts", "1")),
            code=fields.get("code"),
            status=int(fields["status"]) if "status" in fields else None,
            message=fields.get("message", ""),
        )
    return JobRecord(
        job_id=job_id,
        state=JobState(fields["state"]),
        owner=fields.get("owner"),
        lease_expires=float(fields["expires"]) if "expires" in fields else None,
        runs=int(fields.get("runs", "0")),
        result=json.loads(fields["result"]) if "result" in fields else None,
        failure=failure,
        updated=float(fields["updated"]) if "updated" in fields else None,
        attempts=int(fields.get("attempts", "0")),
        resent=int(fields.get("resent", "0")),
    )


class RedisLedger(LedgerBase):
    """A job ledger in Redis, under the keys ``PREFIX:*``; shared by any number of machines.

    *client* is a ``redis.Redis`` (``decode_responses`` either way). *lease* is how
    long a claim lasts without renewal, in seconds; held leases are renewed every
    ``lease / 3`` seconds. Lease times come from the Redis server's clock unless
    *clock* is given. *policy* is what :meth:`run_once` runs functions under.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "retrypolicy:batch",
        policy: Policy | None = None,
        lease: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        if not callable(getattr(client, "register_script", None)):
            msg = f"client: expected a redis.Redis client, got {type(client).__name__}"
            raise TypeError(msg)
        if not isinstance(prefix, str) or not prefix:
            msg = f"prefix: expected a non-empty str, got {prefix!r}"
            raise ValueError(msg)
        self._init_base(policy=policy, lease=lease, clock=clock)
        self.client = client
        self.prefix = prefix
        self._claim, self._finish, self._fail, self._release, self._renew, self._add = (
            client.register_script(_PRELUDE + body)
            for body in (_CLAIM, _FINISH, _FAIL, _RELEASE, _RENEW, _ADD)
        )
        self._requeue = client.register_script(_PRELUDE + _REQUEUE)

    def __repr__(self) -> str:
        return f"RedisLedger(prefix={self.prefix!r}, owner={self.owner!r}, lease={self.lease})"

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def _call(self, script: Any, *args: str) -> int:
        """Run *script* with ARGV = the prefix, then *args*; its number."""
        return int(script(args=[self.prefix, *args]))

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def add(self, job_ids: Iterable[str]) -> int:
        """Register *job_ids* as pending (known ones keep their state); how many were new."""
        ids = [check_job_id(j) for j in job_ids]
        return sum(self._call(self._add, self._now_arg(), *chunk) for chunk in chunks(ids))

    def claim(self, job_id: str, *, steal_from: str | None = None) -> tuple[bool, JobRecord]:
        """Take the job if it is claimable (see :class:`Ledger`); (taken?, its record)."""
        check_job_id(job_id)
        now, lease, steal = self._now_arg(), repr(self.lease), steal_from or ""
        taken, flat, took_over = self._claim(
            args=[self.prefix, job_id, self.owner, now, lease, steal]
        )
        return bool(taken), attrs.evolve(_record(job_id, flat), took_over=bool(took_over))

    def finish(self, job_id: str, result_json: str, attempts: int = 1) -> bool:
        """Mark the job done with *result_json* after *attempts* requests, unless it is done
        already (then False)."""
        attempts_arg = str(int(attempts))
        return bool(self._call(self._finish, job_id, result_json, self._now_arg(), attempts_arg))

    def fail(self, job_id: str, failure: FailureInfo) -> bool:
        """Record *failure* if this owner holds the job; False (no change) otherwise."""
        return bool(
            self._call(
                self._fail,
                job_id,
                self.owner,
                self._now_arg(),
                failure.kind,
                "1" if failure.retryable else "0",
                str(failure.attempts),
                failure.code or "",
                "" if failure.status is None else str(failure.status),
                failure.message,
            )
        )

    def release(self, job_id: str, attempts: int = 0) -> bool:
        """Put a job this owner holds back to pending (counting the *attempts* it sent);
        False if it does not hold it."""
        attempts_arg = str(int(attempts))
        return bool(self._call(self._release, job_id, self.owner, self._now_arg(), attempts_arg))

    def requeue(
        self, *, kinds: Iterable[str] | None = None, job_ids: Iterable[str] | None = None
    ) -> int:
        """Put failed jobs (of *kinds*, among *job_ids*) back to pending; how many were.

        One script per chunk of ids, mirroring :func:`._states.can_requeue`.
        """
        ids = None if job_ids is None else sorted({check_job_id(j) for j in job_ids})
        kind_list = [] if kinds is None else sorted(set(kinds))
        if kinds is not None and not kind_list:
            return 0  # no kind: nothing to requeue (the ids were checked all the same)
        head = [self._now_arg(), str(len(kind_list)), *kind_list]
        if ids is None:
            return self._call(self._requeue, *head)
        return sum(self._call(self._requeue, *head, *chunk) for chunk in chunks(ids))

    def renew(self) -> int:
        """Push the lease of every job this owner holds to ``now + lease``."""
        return self._call(self._renew, self.owner, self._now_arg(), repr(self.lease))

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None for a job this ledger never saw."""
        flat = self.client.hgetall(self._key(check_job_id(job_id)))
        return _record(job_id, flat) if flat else None

    def records(self, state: JobState | None = None) -> Iterator[JobRecord]:
        """Every job (in a given *state*), ordered by id."""
        states = [state] if state is not None else list(JobState)
        ids = sorted(
            {_text(m) for s in states for m in self.client.smembers(f"{self.prefix}:state:{s}")}
        )
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._key(job_id))
        rows = pipe.execute()
        return iter([_record(j, r) for j, r in zip(ids, rows, strict=True) if r])

    def counts(self) -> LedgerCounts:
        """Jobs per state, and failed jobs per kind (``batch status``)."""
        pipe = self.client.pipeline(transaction=False)
        for s in JobState:
            pipe.scard(f"{self.prefix}:state:{s}")
        states = dict(zip(JobState, (int(n) for n in pipe.execute()), strict=True))
        kinds: dict[str, int] = {}
        retryable = 0
        for record in self.records(JobState.FAILED):
            if record.failure is None:
                continue
            kinds[record.failure.kind] = kinds.get(record.failure.kind, 0) + 1
            retryable += record.failure.retryable
        cost = {_text(k): int(v) for k, v in self.client.hgetall(f"{self.prefix}:cost").items()}
        return LedgerCounts(
            states=states,
            failed_kinds=kinds,
            retryable_failed=retryable,
            requests=cost.get("requests", 0),
            retries=cost.get("retries", 0),
            resent=cost.get("resent", 0),
            sent_jobs=cost.get("jobs", 0),
        )
