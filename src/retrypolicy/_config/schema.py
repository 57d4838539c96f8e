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
    """One key of the file format, as documented in ``docs/configuration.md``.

    ``type`` is also what error messages say was expected, so the docs and the
    messages use the same words.
    """

    name: str
    type: str
    default: str
    doc: str


def _backoff_default(name: str) -> str:
    value = attrs.fields_dict(Backoff)[name].default
    return f"the parent's; `{toml_value(value)}` without one"


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
            "rules",
            "array of tables",
            "`[]`",
            "This policy's rules. One with the same match as an inherited rule overrides it "
            "in its place; the others are matched in order before the inherited ones. "
            "The first match wins.",
        ),
    ),
    "backoff": (
        Key(
            "initial",
            "number >= 0 (seconds)",
            _backoff_default("initial"),
            "The wait before the first retry, before jitter.",
        ),
        Key(
            "multiplier",
            "number >= 1",
            _backoff_default("multiplier"),
            "Each retry waits this many times longer than the one before.",
        ),
        Key(
            "max_delay",
            "number >= 0 (seconds)",
            _backoff_default("max_delay"),
            "The cap on a computed wait.",
        ),
        Key(
            "jitter",
            either(JITTERS),
            _backoff_default("jitter"),
            "How waits are spread: uniformly in `[0, d]`, in `[d/2, d]`, "
            "decorrelated, or exactly `d`.",
        ),
        Key(
            "max_retry_after",
            "number >= 0 (seconds)",
            _backoff_default("max_retry_after"),
            "The longest server wait hint (`Retry-After`) honoured; a longer one gives up at once.",
        ),
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
}
"""Every key of the file format by table: ``file`` (the top level, or ``[tool.retrypolicy]``),
``policy``, ``backoff`` (a policy's or a rule's) and ``rule``."""
