"""A policy as a TOML file: :func:`dump_policy`."""

from __future__ import annotations

from .._errors import ConfigError
from .._policy import APPLIED, Policy
from .literals import toml_key, toml_string, toml_value
from .load import value_keys
from .sources import STORM_KEYS

__all__ = ["dump_policy"]


def _lines(section: str, value: object) -> list[str]:
    """``<key> = <value>`` for each key of *section* the core holds on *value*: None as
    ``false`` (TOML has no null), a set as a sorted array."""
    lines = []
    for key in value_keys(section):
        v = getattr(value, key)
        if isinstance(v, frozenset):
            v = sorted(str(x) for x in v)
        lines.append(f"{key} = " + ("false" if v is None else toml_value(v)))
    return lines


def _storm_lines(head: str, policy: Policy) -> tuple[list[str], list[str]]:
    """``<key> = false`` lines for the storm settings that are off, and a table for each on."""
    off: list[str] = []
    tables: list[str] = []
    for section in STORM_KEYS:
        value = getattr(policy, section)
        if value is None:
            off.append(f"{section} = false")
        else:
            tables += ["", f"[{head}.{section}]", *_lines(section, value)]
    return off, tables


def dump_policy(policy: Policy) -> str:
    """*policy* as a self-contained TOML file that :func:`load_policy` reads back equal.

    Everything is written out — every rule with its kind, limits and advice,
    the full backoff, ``extends = false`` — so the file means the same thing
    whatever the built-in profiles become in later versions.

    Raises:
        ConfigError: if the policy has an empty name (there is no
            ``[policies.<name>]`` for it).
    """
    if not policy.name:
        raise ConfigError("policy name '': expected a non-empty name to write as [policies.<name>]")
    head = f"policies.{toml_key(policy.name)}"
    storm_off, storm_tables = _storm_lines(head, policy)
    lines = [
        f"# The retrypolicy policy {toml_string(policy.name)}, self-contained: "
        "it inherits nothing.",
        f"[{head}]",
        "extends = false",
        *_lines("policy", policy),
        *storm_off,
        "",
        f"[{head}.backoff]",
        *_lines("backoff", policy.backoff),
        *storm_tables,
    ]
    for rule in policy.rules:
        lines += ["", f"[[{head}.rules]]"]
        values: dict[str, object] = {
            "status": rule.status.to_data() if rule.status is not None else None,
            "code": rule.code,
            "failure": rule.failure.value if rule.failure is not None else None,
            "kind": str(rule.kind),
            "retry": rule.retry,
            "max_retries": rule.max_retries,
            "advice": rule.advice or None,  # "" is the default: leave it out
        }
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
        if rule.backoff is not None:
            lines += [f"[{head}.rules.backoff]", *_lines("backoff", rule.backoff)]
    return "\n".join(lines) + "\n"


APPLIED["to_toml"] = dump_policy  # policy.to_toml() is dump_policy(policy)
