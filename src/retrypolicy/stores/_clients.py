"""The redis-py clients a RedisStore talks through: bounded, without retries of their own.

A store that falls back to local state must learn fast that Redis is gone, so its
clients have short connect and socket timeouts and redis-py's own retries turned
off (``redis.Redis(host=...)`` retries ten times with backoff by default: the
outage detector would wait for all of them). The store's own outage handling
(:mod:`._gate`) replaces them.

The asyncio side keeps one ``redis.asyncio`` client per event loop: its
connections belong to the loop that opened them, and a program may run several
loops in turn (``asyncio.run`` per test, per job). A client is closed on the loop
that used it when ``asyncio.run`` ends that loop (an async generator parked in
the loop, which ``shutdown_asyncgens`` closes), or by :meth:`LoopClients.aclose`.

``redis`` is an optional dependency, loaded by :func:`_redis` only when a client is
built (``from_url``, or an asyncio twin of your client): importing retrypolicy or an
adapter never imports it, as the import contracts of ``pyproject.toml`` say.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
import re
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "LoopClients",
    "async_factory_from_client",
    "async_factory_from_url",
    "check_seconds",
    "is_async_client",
    "safe_url",
    "sync_client_from_url",
]

_SCHEMES: Final = ("redis", "rediss", "unix")
_EXPECTED_URL: Final = (
    "expected a Redis URL: redis://[[user]:password@]host[:port][/db], "
    "rediss://... (TLS) or unix:///path/to/redis.sock"
)
# keywords the store sets itself: a caller's value would undo the bounded, retry-free client
_OWN: Final = frozenset(
    {"socket_timeout", "socket_connect_timeout", "retry", "retry_on_timeout", "retry_on_error"}
)
# connection settings that mean the same on redis.asyncio (what an asyncio twin copies)
_PORTABLE: Final = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "client_name",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "socket_read_size",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "health_check_interval",
        "protocol",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_password",
    }
)
_PASSWORD_IN_NETLOC: Final = re.compile(r"(//[^/@:]*:)[^/@]*@")
_PASSWORD_IN_QUERY: Final = re.compile(r"(?i)(password=)[^&#]*")


def safe_url(url: str) -> str:
    """*url* with any password masked, for messages and reprs."""
    return _PASSWORD_IN_QUERY.sub(r"\1***", _PASSWORD_IN_NETLOC.sub(r"\1***@", url))


def check_seconds(name: str, value: object, *, zero: bool, default: float) -> float:
    """*value* as a finite number of seconds (> 0, or >= 0 if *zero*), or a ValueError
    naming *name* and what was expected."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (0 <= float(value) < math.inf) or not (zero or value):  # type: ignore[arg-type]
        bound = ">= 0" if zero else "> 0"
        msg = f"{name} {value!r}: expected seconds, a number {bound} (default {default})"
        raise ValueError(msg)
    return float(value)  # type: ignore[arg-type]


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        msg = f"url {url!r}: {_EXPECTED_URL}"
        raise TypeError(msg)
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        msg = f"url {safe_url(url)!r}: {_EXPECTED_URL} ({exc})"
        raise ValueError(msg) from exc
    if scheme not in _SCHEMES:
        msg = f"url {safe_url(url)!r}: {_EXPECTED_URL}"
        raise ValueError(msg)
    return url


def _check_database(url: str) -> None:
    """A database in the path must be a number: redis-py would ignore one that is not
    (``redis://h/prod``) and use database 0, another fleet's, without a word."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or "db" in parse_qs(parts.query):
        return  # a socket path, or the query's db (redis-py reads that one, and checks it)
    db = unquote(parts.path).replace("/", "")  # what redis-py reads as the database
    try:
        if db:
            int(db)
    except ValueError:
        msg = (
            f"url {safe_url(url)!r}: expected a database number after the host "
            f"(redis://host:6379/0), got {db!r}"
        )
        raise ValueError(msg) from None


def _check_options(options: dict[str, Any]) -> None:
    if clash := sorted(_OWN & options.keys()):
        msg = (
            f"{', '.join(clash)}: set by RedisStore.from_url (timeout= bounds connect and "
            "socket waits; redis-py's own retries stay off, the store's fallback replaces them)"
        )
        raise TypeError(msg)


def _redis(module: str) -> Any:
    """A module of the ``redis`` package, loaded now (the first client built loads it)."""
    return importlib.import_module(module)


def _no_retries(*, asyncio_side: bool) -> dict[str, Any]:
    """The client keywords that turn redis-py's own retries off."""
    retry = _redis("redis.asyncio.retry" if asyncio_side else "redis.retry")
    return {"retry": retry.Retry(_redis("redis.backoff").NoBackoff(), 0), "retry_on_error": []}


def _bounded(timeout: float, *, asyncio_side: bool) -> dict[str, Any]:
    timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return timeouts | _no_retries(asyncio_side=asyncio_side)


def sync_client_from_url(url: object, timeout: float, options: dict[str, Any]) -> Any:
    """A ``redis.Redis`` for *url*: connect and socket timeouts of *timeout*, no retries.

    Nothing is connected yet (redis-py connects on the first command)."""
    checked = _check_url(url)
    _check_options(options)
    _check_database(checked)
    try:
        client = _redis("redis").Redis.from_url(
            checked, **options, **_bounded(timeout, asyncio_side=False)
        )
    except ValueError as exc:  # redis-py's own parse: a bad port, db, query value
        msg = f"url {safe_url(checked)!r}: {_EXPECTED_URL} ({exc})"
        raise ValueError(msg) from exc
    pool = client.connection_pool
    try:  # a connection object, never connected: a misspelt option fails here, not at each step
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        msg = f"options {sorted(options)}: not all are redis.Redis connection options ({exc})"
        raise TypeError(msg) from exc
    return client


def async_factory_from_url(url: str, timeout: float, options: dict[str, Any]) -> Callable[[], Any]:
    """What builds the ``redis.asyncio`` twin of :func:`sync_client_from_url`, per loop."""

    def build() -> Any:
        client = _redis("redis.asyncio").Redis
        return client.from_url(url, **options, **_bounded(timeout, asyncio_side=True))

    return build


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


def async_factory_from_client(client: Any) -> Callable[[], Any]:
    """What builds a ``redis.asyncio`` client reaching the same server as the sync *client*:
    its address, credentials, database and timeouts; redis-py's retries off (as above)."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    name = getattr(pool.connection_class, "__name__", "Connection")
    max_connections = getattr(pool, "max_connections", None)

    def build() -> Any:
        asyncio_redis = _redis("redis.asyncio")
        connection = _redis("redis.asyncio.connection")
        default = (
            connection.UnixDomainSocketConnection if "path" in kwargs else connection.Connection
        )
        cls = getattr(connection, name, default)
        if not (isinstance(cls, type) and issubclass(cls, connection.AbstractConnection)):
            cls = default
        accepted = _accepted(cls)
        portable = {k: v for k, v in kwargs.items() if k in _PORTABLE and k in accepted}
        portable.update(_no_retries(asyncio_side=True))
        new_pool = asyncio_redis.ConnectionPool(
            connection_class=cls, max_connections=max_connections, **portable
        )
        return asyncio_redis.Redis.from_pool(new_pool)

    return build


def is_async_client(client: Any) -> bool:
    """True for a ``redis.asyncio`` client (its commands are coroutines)."""
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


async def _closer(
    owner: LoopClients, loop: asyncio.AbstractEventLoop, client: Any
) -> AsyncGenerator[None, None]:
    # Parked in *loop* by LoopClients.get: asyncio.run's shutdown_asyncgens closes it,
    # which closes the client on its own loop before the loop goes.
    try:
        yield
    finally:
        owner.forget(loop)
        await client.aclose()


class LoopClients:
    """One ``redis.asyncio`` client and its scripts per running event loop.

    *fixed*: the caller's own client, used on any loop and never closed by us.
    Otherwise *factory* builds one client per loop, closed when that loop ends
    (or by :meth:`aclose`).
    """

    def __init__(
        self, scripts: Sequence[str], *, factory: Callable[[], Any] | None, fixed: Any = None
    ) -> None:
        self._sources = tuple(scripts)
        self._factory = factory
        self._fixed = None if fixed is None else (fixed, self._register(fixed), None)
        self._lock = threading.Lock()
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            tuple[Any, tuple[Any, ...], AsyncGenerator[None, None] | None],
        ] = weakref.WeakKeyDictionary()

    def _register(self, client: Any) -> tuple[Any, ...]:
        return tuple(client.register_script(source) for source in self._sources)

    async def get(self) -> tuple[Any, tuple[Any, ...]]:
        """The client for the running loop and its scripts (built on first use; no I/O)."""
        if self._fixed is not None:
            return self._fixed[0], self._fixed[1]
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._per_loop.get(loop)
        if entry is not None:
            return entry[0], entry[1]
        assert self._factory is not None  # noqa: S101 - one of fixed/factory is always set
        client = self._factory()
        scripts = self._register(client)
        closer = _closer(self, loop, client)
        with self._lock:
            self._per_loop[loop] = (client, scripts, closer)
        await anext(closer)  # parks it: registered with this loop's async-generator hooks
        return client, scripts

    def forget(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop *loop*'s client from the table (its closer is closing it)."""
        with self._lock:
            self._per_loop.pop(loop, None)

    async def aclose(self) -> None:
        """Close the running loop's client, if this object built one (a caller's client is
        the caller's to close)."""
        if self._fixed is not None:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._per_loop.get(loop)
        if entry is not None and entry[2] is not None:
            await entry[2].aclose()
