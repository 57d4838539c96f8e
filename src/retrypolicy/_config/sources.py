"""Where each value of a policy read from a file was written: what ``explain`` shows.

A policy that ``extends`` another gets values from several places: its own
tables, the tables of the policies it builds on, a built-in profile, the
defaults. :class:`PolicySources` records, for every value, the table that wrote
it. It is kept beside the :class:`~retrypolicy.Policy`, never in it: two
policies that act the same are equal whichever files they came from, so a
policy loaded, dumped and loaded again is equal to the first.

This module is part of the pure core: it imports only other core modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from .._backoff import Backoff
from .._policy import Policy
from .._rules import Rule
from .literals import toml_string, toml_value
from .schema import SCHEMA

__all__ = [
    "BACKOFF_KEYS",
    "DEFAULT",
    "LIMITS",
    "POLICY_VALUES",
    "RULE_VALUES",
    "STORM_KEYS",
    "Origin",
    "PolicySources",
    "RuleSources",
    "builtin_sources",
    "explain_sources",
]

BACKOFF_KEYS: Final = tuple(k.name for k in SCHEMA["backoff"])
"""The keys of a backoff table: each has an origin of its own (``backoff.<key>``)."""

RULE_VALUES: Final = ("kind", "retry", "max_retries", "advice")
"""The values of a rule besides its match and its backoff."""

LIMITS: Final = ("max_attempts", "deadline")
"""The overall limits of a policy."""

STORM_KEYS: Final = ("budget", "limiter", "breaker")
"""The storm-protection settings of a policy: each has one origin (its table)."""

POLICY_VALUES: Final = (*LIMITS, *STORM_KEYS, *(f"backoff.{k}" for k in BACKOFF_KEYS))
"""The values of a policy that have an origin of their own, besides its rules'."""


@attrs.frozen
class Origin:
    """The table that wrote one value."""

    policy: str
    """The key path of the policy's table (``policies.batch``), a built-in profile's
    name (``eugpt``), or "" for a default."""
    path: str
    """The key path of the table that holds the value (``policies.batch.rules[0]``);
    a built-in profile's name; "" for a default."""

    def describe(self, policy: str) -> str:
        """How ``explain`` names this origin for the policy whose table is *policy*."""
        if not self.policy:
            return "default"
        return self.path if self.policy == policy else f"inherited from {self.path}"


DEFAULT: Final = Origin("", "")
"""The origin of a value nothing wrote: a policy with ``extends = false`` leaves it unset."""


@attrs.frozen
class RuleSources:
    """Where a rule of a policy and each of its values were written."""

    written: Origin
    """The rule table that gave the rule its values last: an override, or where it was added."""
    overrides: Origin | None
    """For a rule that overrides an inherited one: where that one was written."""
    values: Mapping[str, Origin]
    """:data:`RULE_VALUES`, and ``backoff.<key>`` when the rule has a backoff of its own."""


@attrs.frozen
class PolicySources:
    """Where each value of a policy was written, its rules in the policy's order."""

    policy: str
    """The key path of the policy's table (``policies.batch``), or a built-in's name."""
    parent: str | None
    """The key path or built-in name of the policy it extends; None for none."""
    values: Mapping[str, Origin]
    """``max_attempts``, ``deadline`` and ``backoff.<key>`` (the policy's backoff)."""
    rules: tuple[RuleSources, ...]
    """One per rule of the policy, in the same order."""


def builtin_sources(name: str, policy: Policy) -> PolicySources:
    """The sources of a built-in profile: every value was written by *name*."""
    here = Origin(name, name)
    plain = dict.fromkeys(RULE_VALUES, here)
    backed = plain | dict.fromkeys((f"backoff.{k}" for k in BACKOFF_KEYS), here)
    return PolicySources(
        policy=name,
        parent=None,
        values=dict.fromkeys(POLICY_VALUES, here),
        rules=tuple(RuleSources(here, None, backed if r.backoff else plain) for r in policy.rules),
    )


# -- what explain prints --------------------------------------------------------------

_SHOWN_ADVICE: Final = 40
_NAME_WIDTH: Final = 13


def _line(name: str, text: str) -> str:
    return f"  {name:<{_NAME_WIDTH}}{text}"


def _advice(advice: str) -> str:
    if len(advice) > _SHOWN_ADVICE:
        advice = advice[: _SHOWN_ADVICE - 1] + "…"
    return toml_string(advice)


def _backoff(whose: str, backoff: Backoff, origins: Mapping[str, Origin], policy: str) -> list[str]:
    """The backoff's keys grouped by origin, a line per group."""
    groups: dict[Origin, list[str]] = {}
    for key in BACKOFF_KEYS:
        groups.setdefault(origins[f"backoff.{key}"], []).append(
            f"{key} {toml_value(getattr(backoff, key))}"
        )
    lines = [f"{', '.join(keys)} ({o.describe(policy)})" for o, keys in groups.items()]
    return [_line("backoff", f"{whose}: {lines[0]}"), *(_line("", line) for line in lines[1:])]


def explain_sources(policy: Policy, sources: PolicySources, rule: Rule | None) -> list[str]:
    """Lines saying where each value behind *rule* (a rule of *policy*) was written.

    The rule's kind, retry, max_retries and advice; the backoff it waits by (its
    own, else the policy's), key by key; the policy's ``max_attempts`` and
    ``deadline``. *sources* must be the sources of *policy*.
    """
    own = sources.policy
    lines = ["sources:"]
    index = next((i for i, r in enumerate(policy.rules) if r is rule), None)
    if rule is not None and index is not None:
        rs = sources.rules[index]
        lines[0] += f" rule {rs.written.describe(own)}"
        if rs.overrides is not None and rs.written.policy == own:
            lines[0] += f" (overrides the rule from {rs.overrides.path})"
        shown = {
            "kind": str(rule.kind),
            "retry": toml_value(rule.retry),
            "max_retries": toml_value(rule.max_retries),
            "advice": _advice(rule.advice),
        }
        lines += [_line(k, f"{shown[k]} ({rs.values[k].describe(own)})") for k in RULE_VALUES]
        if rule.backoff is not None:
            lines += _backoff("the rule's", rule.backoff, rs.values, own)
    if rule is None or rule.backoff is None:
        lines += _backoff("the policy's", policy.backoff, sources.values, own)
    for key in (*LIMITS, *STORM_KEYS):
        value = getattr(policy, key)
        if key in LIMITS:
            text = "none" if value is None else toml_value(value)
        else:
            text = "off" if value is None else "on"
        lines.append(_line(key, f"{text} ({sources.values[key].describe(own)})"))
    return lines
