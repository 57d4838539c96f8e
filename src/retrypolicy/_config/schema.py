"""The file format as data: every key of every kind of table, its type, default and meaning.

:data:`SCHEMA` is what ``docs/configuration.md`` is tested against, so the docs
cannot drift from the reader; its ``type`` column is also what a problem says
was expected, so the docs and the messages use the same words. It describes;
it does not check: values are checked by the core's own validators (see
:mod:`retrypolicy._config.load`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from .._backoff import JITTERS, Backoff
from .._breaker import CircuitBreaker
from .._budget import RetryBudget
from .._limiter import AdaptiveLimiter
from .._profiles import PROFILES
from .._rules import ANY_CODE, Failure
from .literals import either, toml_value

__all__ = ["DEFAULT_EXTENDS", "DEFAULT_RETRIES", "SCHEMA", "Key"]

DEFAULT_EXTENDS: Final = "eugpt"
"""What a policy inherits when it does not say: the default profile everywhere else too."""

DEFAULT_RETRIES: Final = 2
"""``max_retries`` of a rule that says ``retry = true`` and no more ("once or twice")."""


@attrs.frozen
class Key:
    """One key of the file format, as documented in ``docs/configuration.md``."""

    name: str
    type: str
    default: str
    doc: str


def _default_of(cls: type, name: str) -> str:
    value = attrs.fields_dict(cls)[name].default
    if isinstance(value, frozenset):
        return "`[" + ", ".join(toml_value(v) for v in sorted(value)) + "]`"
    return "`false`" if value is None else f"`{toml_value(value)}`"


def _keys(cls: type, *rows: tuple[str, str, str], default: str = "{}") -> tuple[Key, ...]:
    """The keys *rows* give as (name, type, doc), each with the default of *cls*'s field
    of that name (in the ``{}`` of *default*): the core's defaults, never copied."""
    return tuple(
        Key(name, type_, default.format(_default_of(cls, name)), doc) for name, type_, doc in rows
    )


def _storm(what: str, cls: type, *rows: tuple[str, str, str]) -> tuple[Key, ...]:
    """A storm-protection table's keys: ``enabled``, then *rows* as :func:`_keys` reads them."""
    doc = f"`false` turns the {what} off (as `{what} = false` does)."
    return (Key("enabled", "boolean", "`true`", doc), *_keys(cls, *rows))


SCHEMA: Final[Mapping[str, tuple[Key, ...]]] = {
    "file": (
        Key(
            "policies",
            "table of policy tables",
            "required",
            "One `[policies.<name>]` table per policy; the name is the profile that selects it.",
        ),
    ),
    "policy": (
        Key(
            "extends",
            "string, or false",
            f'`"{DEFAULT_EXTENDS}"`',
            "The policy this one builds on: a built-in profile (`"
            + "`, `".join(f'"{p}"' for p in PROFILES)
            + "`) or another policy of the file; `false` to inherit nothing.",
        ),
        Key(
            "max_attempts",
            "integer >= 1, or false",
            "the parent's; none without one",
            "Attempts in all, the first try included; `false` for no overall limit.",
        ),
        Key(
            "deadline",
            "number > 0 (seconds), or false",
            "the parent's; none without one",
            "Seconds across all attempts: no wait is scheduled that would end past it; "
            "`false` for none.",
        ),
        Key(
            "backoff",
            "table",
            "the parent's backoff",
            "The policy's backoff; the keys given replace the parent's one by one.",
        ),
        Key(
            "budget",
            "table, or true/false",
            "the parent's; on in `eugpt`, off with `extends = false`",
            "The retry budget shared by the policy's calls (docs/storm.md); `false` turns it "
            "off, `true` or a table turns it on (the keys given replace the parent's).",
        ),
        Key(
            "limiter",
            "table, or true/false",
            "the parent's; off in the built-ins",
            "Adaptive pacing after 429s and persistent-limit detection; `true` or a table "
            "turns it on.",
        ),
        Key(
            "breaker",
            "table, or true/false",
            "the parent's; off in the built-ins",
            "A circuit breaker per host; `true` or a table turns it on.",
        ),
        Key(
            "rules",
            "array of tables",
            "`[]`",
            "This policy's rules. One with the same match as an inherited rule overrides it "
            "in its place; the others are matched in order before the inherited ones. "
            "The first match wins.",
        ),
    ),
    "backoff": _keys(
        Backoff,
        ("initial", "number >= 0 (seconds)", "The wait before the first retry, before jitter."),
        (
            "multiplier",
            "number >= 1",
            "Each retry waits this many times longer than the one before.",
        ),
        ("max_delay", "number >= 0 (seconds)", "The cap on a computed wait."),
        (
            "jitter",
            either(JITTERS),
            "How waits are spread: uniformly in `[0, d]`, in `[d/2, d]`, "
            "decorrelated, or exactly `d`.",
        ),
        (
            "max_retry_after",
            "number >= 0 (seconds)",
            "The longest server wait hint (`Retry-After`) honoured; a longer one gives up at once.",
        ),
        default="the parent's; {} without one",
    ),
    "rule": (
        Key(
            "status",
            'integer 100-599, a class like "5xx", or an array of these',
            "none",
            'The HTTP statuses this rule matches: `503`, `[502, 503]`, `"5xx"`.',
        ),
        Key(
            "code",
            f'non-empty string; "{ANY_CODE}" for any code',
            "none",
            "The error code this rule matches (the envelope's or a stream `error` event's).",
        ),
        Key(
            "failure",
            either([f.value for f in Failure]),
            "none",
            "The transport failure this rule matches (no HTTP status).",
        ),
        Key(
            "kind",
            "non-empty string",
            "an override: the overridden rule's; else derived (see below)",
            "The class of outcome: a label for errors, logs and per-kind retry limits.",
        ),
        Key(
            "retry",
            "boolean",
            "`true` if `max_retries` > 0, else `false` (an override: see below)",
            "Whether outcomes this rule matches are retried at all.",
        ),
        Key(
            "max_retries",
            "integer >= 0",
            f"`{DEFAULT_RETRIES}` if `retry = true`, else `0` (an override: see below)",
            "Retries of this kind before giving up.",
        ),
        Key(
            "advice",
            "string",
            '`""`; an override: the overridden rule\'s',
            "What to tell a caller when this rule gives up; carried by the raised error.",
        ),
        Key(
            "backoff",
            "table",
            "the policy's backoff; an override: the overridden rule's",
            "A backoff for this rule's outcomes; the keys given replace the policy's "
            "(an override's: the overridden rule's, when it has a backoff of its own).",
        ),
    ),
    "budget": _storm(
        "budget",
        RetryBudget,
        ("capacity", "number > 0", "Tokens in a full bucket; the bucket starts full."),
        (
            "retry_cost",
            "number >= 0",
            "Tokens a retry costs; a retry the bucket cannot pay for gives up at once.",
        ),
        (
            "timeout_cost",
            "number >= 0",
            "Tokens a retry after a timeout (`timeout`, `upstream_timeout`) costs.",
        ),
        ("success_refund", "number >= 0", "Tokens a success puts back, up to `capacity`."),
        (
            "refill_rate",
            "number >= 0 (tokens/s)",
            "Tokens per second that flow back with time alone; `0` for none.",
        ),
    ),
    "limiter": _storm(
        "limiter",
        AdaptiveLimiter,
        (
            "decrease",
            "number > 0 and < 1",
            "A cut sets the rate to the limit measured since the last cut (requests let "
            "through per second) times this.",
        ),
        (
            "increase",
            "number >= 0 (relative, per second cubed)",
            "How fast the rate grows without a 429: `t` s past the measured limit it is that "
            "limit x (1 + increase x t^3), the same at any scale; `0`: no growth.",
        ),
        ("min_rate", "number > 0 (requests/s)", "The floor of the rate."),
        (
            "initial_rate",
            "number > 0 (requests/s), or false",
            "The rate pacing starts at after the first 429; `false`: the measured sending "
            "rate times `decrease`.",
        ),
        (
            "cooldown",
            "number >= 0 (seconds)",
            "After a cut, 429s within this many seconds do not cut again.",
        ),
        (
            "idle_reset",
            "number > 0 (seconds)",
            "Seconds without a 429 after which pacing stops.",
        ),
        (
            "persist_after",
            "integer >= 1",
            "429s in a row that make a limit persistent: reported, and 429s not retried "
            "until another answer comes.",
        ),
        (
            "persist_window",
            "number > 0 (seconds)",
            "Seconds between two `retry.rate_limit_persistent` reports.",
        ),
    ),
    "breaker": _storm(
        "breaker",
        CircuitBreaker,
        (
            "failure_rate",
            "number > 0 and <= 1",
            "The fraction of failed attempts in the window that opens the breaker.",
        ),
        ("min_calls", "integer >= 1", "Attempts in the window before the failure rate counts."),
        (
            "window",
            "number > 0 (seconds)",
            "The window the failure rate is computed over (counts reset after it).",
        ),
        (
            "open_for",
            "number > 0 (seconds)",
            "Seconds the breaker stays open before a probe goes through.",
        ),
        ("half_open_probes", "integer >= 1", "Attempts let through while half-open."),
        (
            "kinds",
            "array of non-empty strings",
            "The failure kinds that count as failures; each a kind of the policy's rules "
            "(a typo is an error, not a kind the breaker never sees).",
        ),
    ),
}
"""Every key of the file format by table: ``file`` (the top level, or ``[tool.retrypolicy]``),
``policy``, ``backoff`` (a policy's or a rule's), ``rule``, and the storm-protection tables
``budget``, ``limiter`` and ``breaker``."""
