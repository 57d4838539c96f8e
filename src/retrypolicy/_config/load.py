"""Policies from TOML files: :func:`load_policy`, and :func:`load_policies` for a whole file.

A file holds ``[policies.<name>]`` tables (in ``pyproject.toml``: the same under
``[tool.retrypolicy]``). Each policy ``extends`` a built-in profile or another
policy of the file. A rule with the same match as an inherited rule (the same
``status``, ``code`` and ``failure``) overrides it in its place and keeps what
it does not set; the other rules are matched before the inherited ones.
:func:`load_policy_with_sources` also says where each value was written.

Why the reader is written the way it is:

- **Every problem at once.** A user fixing a config file should not play
  whack-a-mole: the whole file is checked (every policy, not only the selected
  one) and one :class:`ConfigFileError` lists each problem with its key path
  (``policies.batch.rules[2].status``), what was expected and what was found.
- **Values are checked once, by the core.** The reader only translates TOML
  into what the core takes (``false`` is None, as TOML has no null; a whole
  number of seconds is a float) and lets the validators of
  :class:`~retrypolicy.Policy`, :class:`~retrypolicy.Rule` and
  :class:`~retrypolicy.Backoff` decide, so ``status = "503"`` in a file and
  ``Rule(status="503")`` in code cannot disagree. Each value is tried alone on
  a valid object of its kind (``attrs.evolve`` runs every converter and
  validator), so a refusal is pinned to its own key path, and the others are
  still checked.
- **No traceback from inside attrs.** What the core refuses is re-worded in the
  schema's words: the key path, the key's documented type as what was
  expected, and the value as the file wrote it.

This module is part of the pure core: it imports only other core modules and
the standard library (``tomllib``).
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._backoff import JITTERS, Backoff
from .._breaker import CircuitBreaker
from .._budget import RetryBudget
from .._errors import ConfigError
from .._limiter import AdaptiveLimiter
from .._policy import Policy
from .._profiles import PROFILES
from .._rules import Failure, Kind, Rule
from .literals import join_key, show, toml_string
from .schema import DEFAULT_EXTENDS, DEFAULT_RETRIES, SCHEMA
from .sources import (
    BACKOFF_KEYS,
    LIMITS,
    RULE_VALUES,
    STORM_KEYS,
    Origin,
    PolicySources,
    RuleSources,
    builtin_sources,
)

__all__ = [
    "PYPROJECT",
    "ConfigFileError",
    "load_policies",
    "load_policy",
    "load_policy_with_sources",
]

PYPROJECT: Final = "pyproject.toml"
"""Files with this name are read from their ``[tool.retrypolicy]`` table."""


ConfigFileError = ConfigError
"""The error a policy file raises: ``rp.ConfigError`` itself (``.path``, ``.problems``), built
by :meth:`ConfigError.for_file`, so tracebacks and messages name the public class."""


class _Mark(enum.Enum):
    INVALID = "invalid"


_INVALID: Final = _Mark.INVALID


def _expected(
    problems: list[str], path: str, expected: str, value: object, hint: str = ""
) -> Literal[_Mark.INVALID]:
    found = "none" if value is None else show(value)  # TOML has no null: None is a missing key
    problems.append(f"{path}: expected {expected}; found {found}" + _then(hint))
    return _INVALID


def _then(hint: str) -> str:
    return f"; {hint}" if hint else ""


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``did you mean "x"?`` for the closest of *choices*, or "" when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {toml_string(close[0])}?" if close else ""


def _type_of(section: str, key: str) -> str:
    return next(k.type for k in SCHEMA[section] if k.name == key)


# -- values, checked by the core ------------------------------------------------------------

_PROBES: Final[Mapping[str, Any]] = {
    "policy": Policy(name="probe", rules=()),
    "backoff": Backoff(),
    "rule": Rule(kind="custom", retry=False, status=200),
    "budget": RetryBudget(),
    "limiter": AdaptiveLimiter(),
    "breaker": CircuitBreaker(),
}
"""A valid object of each kind of table: each value of the file is tried on it alone."""

_UNDERIVED: Final = "custom"
"""The kind of a rule written without one, until the inherited rules derive it."""

_SUBTABLES: Final[Mapping[str, tuple[str, ...]]] = {
    "file": ("policies",),
    "policy": ("backoff", "rules", "budget", "limiter", "breaker"),
    "backoff": (),
    "rule": ("backoff",),
    "budget": (),
    "limiter": (),
    "breaker": (),
}
"""The keys the reader walks into rather than hands to the core."""

_OWN: Final[Mapping[str, tuple[str, ...]]] = {
    "policy": ("extends",),
    "budget": ("enabled",),
    "limiter": ("enabled",),
    "breaker": ("enabled",),
}
"""The keys only the reader gives a meaning to: the core has no field for them."""

_FALSE_IS_NONE: Final = frozenset({"max_attempts", "deadline", "initial_rate"})
"""TOML has no null: ``false`` removes a limit."""

_NUMBERS: Final = frozenset(
    field.name
    for probe in _PROBES.values()
    for field in attrs.fields(type(probe))
    if field.type in ("float", "float | None")
)
"""Keys the core holds as floats (its fields typed so): a TOML integer there is read as one."""

_ARRAYS: Final = frozenset({"status"})
"""Keys that may hold an array: each item is tried alone first, so a problem names it."""

_CHOICES: Final[Mapping[str, Sequence[str]]] = {
    "jitter": JITTERS,
    "failure": [f.value for f in Failure],
}
"""Keys with a closed set of strings: a refused one gets a "did you mean"."""


def value_keys(section: str) -> list[str]:
    """The keys of *section* whose values the core checks, in the schema's order."""
    skip = {*_SUBTABLES[section], *_OWN.get(section, ())}
    return [k.name for k in SCHEMA[section] if k.name not in skip]


def _from_toml(key: str, value: object) -> object:
    """*value* as the core takes it; no checking, the core does that."""
    if value is False and key in _FALSE_IS_NONE:
        return None
    if key in _NUMBERS and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # tomllib does not bound integers: 10**400 is past every float
            return math.inf if value > 0 else -math.inf
    return value


def _tried(section: str, key: str, value: object) -> object:
    """*value* as the core holds it once set as *key* on a valid object; INVALID if refused."""
    try:
        return getattr(attrs.evolve(_PROBES[section], **{key: value}), key)
    except (TypeError, ValueError):
        return _INVALID


def _core_value(section: str, key: str, value: object, path: str, problems: list[str]) -> object:
    """The value of *key* as the core holds it, or INVALID (and a problem) if it refuses it."""
    expected = _type_of(section, key)
    if key in _ARRAYS and isinstance(value, list):
        refused = [i for i, item in enumerate(value) if _tried(section, key, [item]) is _INVALID]
        for i in refused:
            _expected(problems, f"{path}[{i}]", expected, value[i])
        if refused:
            return _INVALID
    result = _tried(section, key, _from_toml(key, value))
    if result is _INVALID:
        choices = _CHOICES.get(key)
        hint = _did_you_mean(value, choices) if choices and isinstance(value, str) else ""
        _expected(problems, path, expected, value, hint)
    return result


def _checked(
    table: Mapping[str, object], section: str, path: str, problems: list[str]
) -> dict[str, Any]:
    """The values of *table* the core accepted, as it holds them; problems for the rest."""
    known = [k.name for k in SCHEMA[section]]
    for key in table:
        if key not in known:
            problems.append(
                f"{join_key(path, key)}: unknown key; expected one of: {', '.join(known)}"
                + _then(_did_you_mean(key, known))
            )
    got = {
        key: _core_value(section, key, table[key], join_key(path, key), problems)
        for key in value_keys(section)
        if key in table
    }
    return {key: value for key, value in got.items() if value is not _INVALID}


def _storm_changes(
    table: Mapping[str, object], path: str, problems: list[str]
) -> dict[str, dict[str, Any] | None]:
    """For each storm table *table* sets: None (turned off), or the checked keys (on)."""
    out: dict[str, dict[str, Any] | None] = {}
    for key in STORM_KEYS:
        if key not in table:
            continue
        value, where = table[key], join_key(path, key)
        if isinstance(value, bool):
            out[key] = {} if value else None
        elif not isinstance(value, dict):
            _expected(problems, where, _type_of("policy", key), value)
        else:
            checked = _checked(value, key, where, problems)
            enabled = value.get("enabled", True)
            if isinstance(enabled, bool):
                out[key] = checked if enabled else None
            else:
                _expected(problems, join_key(where, "enabled"), "boolean", enabled)
    return out


def _backoff_changes(
    table: Mapping[str, object], path: str, problems: list[str]
) -> dict[str, Any] | None:
    """The checked keys of the ``backoff`` sub-table of *table*, or None if it has none."""
    value, where = table.get("backoff"), join_key(path, "backoff")
    if not isinstance(value, dict):
        if value is not None:
            _expected(problems, where, "a table", value)
        return None
    return _checked(value, "backoff", where, problems)


# -- the file, checked ---------------------------------------------------------------------


@attrs.frozen
class _RuleSpec:
    path: str
    rule: Rule
    """The rule as written, with a new rule's defaults; its kind is a placeholder
    unless ``kind`` is in ``given``."""
    given: frozenset[str]
    """The keys the table sets: an override inherits the others."""
    backoff: dict[str, Any] | None
    """Changes to the policy's backoff, or None for no backoff of its own."""


@attrs.frozen
class _PolicySpec:
    name: str
    path: str
    extends: str | _Mark | None
    """A parent's name, None for ``extends = false``, or INVALID."""
    limits: dict[str, Any]
    """``max_attempts`` and ``deadline`` as given (None for ``false``); the rest is inherited."""
    backoff: dict[str, Any]
    rules: list[_RuleSpec]
    valid: bool
    """False when any of this policy's own values were rejected: it is then not built."""
    storm: dict[str, dict[str, Any] | None] = attrs.field(factory=dict)
    """Per storm table given: None (off) or the keys that change the parent's (or default)."""


def _rule_spec(table: Mapping[str, object], path: str, problems: list[str]) -> _RuleSpec | None:
    before = len(problems)
    got = _checked(table, "rule", path, problems)
    backoff = _backoff_changes(table, path, problems)
    if len(problems) > before:
        return None
    retry = got["retry"] if "retry" in got else got.get("max_retries", 0) > 0
    max_retries = got.get("max_retries", DEFAULT_RETRIES if retry else 0)
    try:  # what no single value decides: that the rule matches on something
        rule = Rule(**{"kind": _UNDERIVED, **got, "retry": retry, "max_retries": max_retries})
    except (TypeError, ValueError) as e:
        problems.append(f"{path}: {e}")
        return None
    return _RuleSpec(path=path, rule=rule, given=frozenset(got), backoff=backoff)


def _extends(table: Mapping[str, object], path: str, problems: list[str]) -> str | _Mark | None:
    value = table.get("extends", DEFAULT_EXTENDS)
    if value is False:
        return None
    if isinstance(value, str) and value:
        return value
    return _expected(problems, join_key(path, "extends"), _type_of("policy", "extends"), value)


def _policy_spec(
    name: str, table: Mapping[str, object], path: str, problems: list[str]
) -> _PolicySpec:
    before = len(problems)
    limits = _checked(table, "policy", path, problems)
    extends = _extends(table, path, problems)
    backoff = _backoff_changes(table, path, problems) or {}
    storm = _storm_changes(table, path, problems)
    rules: list[_RuleSpec] = []
    raw_rules = table.get("rules", [])
    rules_path = join_key(path, "rules")
    if not isinstance(raw_rules, list):
        hint = f"write [[{rules_path}]], not [{rules_path}]" if isinstance(raw_rules, dict) else ""
        _expected(problems, rules_path, "an array of tables", raw_rules, hint)
        raw_rules = []
    for i, raw in enumerate(raw_rules):
        where = f"{rules_path}[{i}]"
        if not isinstance(raw, dict):
            _expected(problems, where, "a table", raw)
        elif (spec := _rule_spec(raw, where, problems)) is not None:
            rules.append(spec)
    return _PolicySpec(
        name=name,
        path=path,
        extends=extends,
        limits=limits,
        backoff=backoff,
        rules=rules,
        valid=len(problems) == before,
        storm=storm,
    )


# -- extends: parents, cycles, and building in order ----------------------------------------


def _parent_in_file(spec: _PolicySpec, specs: Mapping[str, _PolicySpec]) -> str | None:
    """The policy of the file that *spec* extends; None for a built-in or no parent.

    A policy of the file shadows a built-in of the same name, except for itself:
    ``[policies.eugpt]`` (which extends ``"eugpt"`` by default) customises the
    built-in rather than extending itself.
    """
    ext = spec.extends
    if isinstance(ext, str) and ext in specs and ext != spec.name:
        return ext
    return None


def _check_parents(specs: Mapping[str, _PolicySpec], problems: list[str]) -> set[str]:
    """Report unknown parents and extends cycles; the names that cannot be built."""
    broken: set[str] = set()
    for spec in specs.values():
        ext = spec.extends
        if not isinstance(ext, str) or ext in PROFILES or _parent_in_file(spec, specs):
            continue
        known = sorted({*PROFILES, *(n for n in specs if n != spec.name)})
        why = "a policy cannot extend itself" if ext == spec.name else _did_you_mean(ext, known)
        expected = f"a built-in profile or a policy of this file ({', '.join(known)}), or false"
        _expected(problems, join_key(spec.path, "extends"), expected, ext, why)
        broken.add(spec.name)
    reported: set[frozenset[str]] = set()
    for start in specs:
        chain = [start]
        while (parent := _parent_in_file(specs[chain[-1]], specs)) is not None:
            if parent in chain:
                cycle = chain[chain.index(parent) :]
                broken.update(cycle)
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    first = cycle.index(min(cycle))  # report each cycle once, from one place
                    ordered = [*cycle[first:], *cycle[:first]]
                    problems.append(
                        f"{join_key(specs[ordered[0]].path, 'extends')}: expected a chain of "
                        f"policies ending in a built-in profile or extends = false; found a "
                        f"cycle {' -> '.join([*ordered, ordered[0]])}"
                    )
                break
            chain.append(parent)
    return broken


_Built: TypeAlias = tuple[Policy, PolicySources]
"""A policy, and where each of its values was written."""

_ROOT: Final[_Built] = (_PROBES["policy"], builtin_sources("", _PROBES["policy"]))
"""What a policy with ``extends = false`` builds on: no rules, and each value its default
(written by "": :data:`~.sources.DEFAULT`)."""


def _build_all(specs: Mapping[str, _PolicySpec], problems: list[str]) -> dict[str, _Built]:
    """Every policy that can be built: parents first, each built once."""
    broken = _check_parents(specs, problems)
    built: dict[str, _Built | None] = {}

    def build(name: str) -> _Built | None:
        if name not in built:
            spec = specs[name]
            built[name] = None  # unless it can be built
            if spec.valid and name not in broken:
                in_file = _parent_in_file(spec, specs)
                parent: _Built | None = _ROOT
                if in_file is not None:
                    parent = build(in_file)
                elif isinstance(spec.extends, str):
                    profile = PROFILES[spec.extends]
                    parent = (profile, builtin_sources(spec.extends, profile))
                if parent is not None:
                    built[name] = _build(spec, parent)
        return built[name]

    out = {name: b for name in specs if (b := build(name)) is not None}
    for name, (policy, _) in out.items():
        _check_breaker_kinds(specs[name], policy, problems)
    return out


def _check_breaker_kinds(spec: _PolicySpec, policy: Policy, problems: list[str]) -> None:
    """The breaker counts an attempt as failed when its kind is in ``kinds``: a kind none of
    the policy's rules gives (a typo: ``"unavailble"``) would never be counted, and the
    breaker would silently never open for it. Only the kinds the file writes are checked."""
    breaker = spec.storm.get("breaker")
    written = breaker.get("kinds") if breaker else None
    if policy.breaker is None or written is None:
        return
    given = {str(r.kind) for r in policy.rules}
    known = sorted(given | ({k.value for k in Kind} - {Kind.SUCCESS.value}))
    where = join_key(join_key(spec.path, "breaker"), "kinds")
    for kind in sorted(written):
        if kind not in known:
            expected = f"a failure kind of the policy's rules ({', '.join(sorted(given))})"
            _expected(problems, where, expected, kind, _did_you_mean(kind, known))


def _match(rule: Rule) -> tuple[object, ...]:
    """What a rule matches on: rules with equal matches match exactly the same outcomes."""
    return (rule.status, rule.code, rule.failure)


def _build(spec: _PolicySpec, parent: _Built) -> _Built:
    """The policy *spec* describes on top of *parent*, and where each value came from.

    A rule of *spec* with the same match as an inherited rule overrides it in its
    place; the others come first, in the file's order. Every value was accepted
    by the validators that run here again, and no validator looks at two values
    of different tables, so this does not fail.
    """
    p_policy, p_sources = parent
    inherited, inherited_sources, p_values = p_policy.rules, p_sources.rules, p_sources.values
    here = Origin(spec.path, spec.path)
    values = {key: here if key in spec.limits else p_values[key] for key in LIMITS}
    backoff = _backoff_over(spec.backoff, here, p_policy.backoff, p_values, values)
    added: list[tuple[Rule, RuleSources]] = []
    overrides: dict[int, list[tuple[Rule, RuleSources]]] = {}
    for rule_spec in spec.rules:
        slot = next(
            (i for i, r in enumerate(inherited) if _match(r) == _match(rule_spec.rule)), None
        )
        if slot is None:
            added.append(_new_rule(rule_spec, spec.path, inherited, backoff, values))
        else:
            old = (inherited[slot], inherited_sources[slot])
            overrides.setdefault(slot, []).append(
                _override(rule_spec, spec.path, old, backoff, values)
            )
    built = [
        *added,
        *(
            item
            for i, old in enumerate(zip(inherited, inherited_sources, strict=True))
            for item in overrides.get(i, [old])
        ),
    ]
    fields = {key: getattr(p_policy, key) for key in (*LIMITS, *STORM_KEYS)} | spec.limits
    for key in STORM_KEYS:
        values[key] = p_values[key]
        if key in spec.storm:
            changes, base = spec.storm[key], fields[key] or _PROBES[key]
            fields[key] = None if changes is None else attrs.evolve(base, **changes)
            values[key] = Origin(spec.path, join_key(spec.path, key))
    policy = Policy(name=spec.name, rules=[r for r, _ in built], backoff=backoff, **fields)
    sources = PolicySources(
        policy=spec.path,
        parent=p_sources.policy or None,  # "": the root of extends = false
        values=values,
        rules=tuple(s for _, s in built),
    )
    return policy, sources


def _backoff_over(
    table: Mapping[str, Any],
    here: Origin,
    base: Backoff,
    base_origins: Mapping[str, Origin],
    origins: dict[str, Origin],
) -> Backoff:
    """The ``backoff`` *table* of the table at *here*, on top of *base*; each key's origin
    into *origins*."""
    given = Origin(here.policy, join_key(here.path, "backoff"))
    for key in BACKOFF_KEYS:
        v = f"backoff.{key}"
        origins[v] = given if key in table else base_origins[v]
    return attrs.evolve(base, **table)


def _new_rule(
    spec: _RuleSpec,
    policy: str,
    inherited: Sequence[Rule],
    policy_backoff: Backoff,
    policy_origins: Mapping[str, Origin],
) -> tuple[Rule, RuleSources]:
    """A rule with a match of its own: its kind derived, its backoff table on the policy's."""
    rule = spec.rule
    here = Origin(policy, spec.path)
    origins = dict.fromkeys(RULE_VALUES, here)
    backoff = None
    if spec.backoff is not None:
        backoff = _backoff_over(spec.backoff, here, policy_backoff, policy_origins, origins)
    kind = rule.kind if "kind" in spec.given else _derived_kind(rule, inherited)
    return attrs.evolve(rule, kind=kind, backoff=backoff), RuleSources(here, None, origins)


def _override(
    spec: _RuleSpec,
    policy: str,
    old: tuple[Rule, RuleSources],
    policy_backoff: Backoff,
    policy_origins: Mapping[str, Origin],
) -> tuple[Rule, RuleSources]:
    """*spec* over the inherited rule of the same match: what it does not set is kept.

    ``retry`` and ``max_retries`` go together: both are kept unless one is set.
    Given ``max_retries`` alone, ``retry`` follows it as in any rule; given
    ``retry = true`` alone, an inherited count > 0 is kept (else the default);
    ``retry = false`` alone retries nothing. A backoff table replaces keys of the
    inherited rule's backoff, or of the policy's when that rule has none.
    """
    rule, (old_rule, old_sources) = spec.rule, old
    here = Origin(policy, spec.path)
    origins = dict(old_sources.values)
    changes: dict[str, Any] = {}
    for key in ("kind", "advice"):
        if key in spec.given:
            changes[key], origins[key] = getattr(rule, key), here
    if "retry" in spec.given or "max_retries" in spec.given:
        changes["retry"], origins["retry"] = rule.retry, here
        keep = rule.retry and "max_retries" not in spec.given and old_rule.max_retries > 0
        if not keep:
            changes["max_retries"], origins["max_retries"] = rule.max_retries, here
    if spec.backoff is not None:
        base, base_origins = old_rule.backoff, old_sources.values
        if base is None:
            base, base_origins = policy_backoff, policy_origins
        changes["backoff"] = _backoff_over(spec.backoff, here, base, base_origins, origins)
    return attrs.evolve(old_rule, **changes), RuleSources(here, old_sources.written, origins)


def _derived_kind(rule: Rule, inherited: Sequence[Rule]) -> str:
    """The label of a rule written without ``kind``.

    The kind the inherited rules give the same outcome, when all of the rule's
    statuses get the same one — so ``status = 503`` under ``eugpt`` stays
    ``unavailable`` and still raises ``ServiceUnavailableError``. Otherwise by
    status class (``client_error``, ``server_error``), else the failure's name,
    else ``custom``. A status class such as ``"5xx"`` is labelled by its class.
    """
    status = rule.status
    if status is None or not status.classes:
        probes: list[int | None] = [*sorted(status.codes)] if status is not None else [None]
        kinds = {
            next((r.kind for r in inherited if r.matches(s, rule.code, rule.failure)), None)
            for s in probes
        }
        if len(kinds) == 1 and (kind := kinds.pop()) is not None:
            return kind
    if status is not None:
        classes = status.classes | {c // 100 for c in status.codes}
        if classes == {4}:
            return "client_error"
        if classes == {5}:
            return "server_error"
        return "custom"
    if rule.failure is not None and rule.code is None:
        return rule.failure.value
    return "custom"


def _read(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:  # utf-8-sig: tolerate the BOM some Windows editors write
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        problem = "cannot read the policy file: expected an existing file; found none"
    except OSError as e:
        problem = f"cannot read the policy file: expected a readable file; found {e}"
    except UnicodeDecodeError as e:  # before ValueError, which it is
        line = e.object[: e.start].count(b"\n") + 1
        problem = (
            f"cannot read the policy file: expected UTF-8 text (TOML); "
            f"found byte 0x{e.object[e.start]:02x} on line {line}"
        )
    except ValueError as e:  # TOMLDecodeError, and the int-digits limit tomllib hits raw
        problem = f"invalid TOML: {e}"
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        problem = "invalid TOML: arrays or inline tables nested too deeply"
    problems.append(problem)
    return None


def _top_level(root: Mapping[str, object], prefix: str, problems: list[str]) -> None:
    """Unknown keys at the top level, with the likely fix for each."""
    for key, value in root.items():
        if key == "policies":
            continue
        hint = _did_you_mean(key, ["policies"])
        if not hint and not prefix and key == "tool" and isinstance(value, dict):
            hint = (
                f"[tool.retrypolicy] is read only from a file named {PYPROJECT}; "
                "elsewhere write [policies.<name>] at the top level"
            )
        elif not hint and isinstance(value, dict):
            hint = f"did you mean [{join_key(join_key(prefix, 'policies'), key)}]?"
        problems.append(
            f"{join_key(prefix, key)}: unknown key; expected one of: policies{_then(hint)}"
        )


def _load_file(path: Path, problems: list[str]) -> tuple[list[str], dict[str, _Built]]:
    """The names the file defines, and every policy of it that could be built.

    Everything wrong in the file is appended to *problems*.
    """
    doc = _read(path, problems)
    if doc is None:
        return [], {}
    root: Mapping[str, object] = doc
    prefix = ""
    if path.name == PYPROJECT:
        prefix = "tool.retrypolicy"
        tool = doc.get("tool")
        section = tool.get("retrypolicy") if isinstance(tool, dict) else None
        if not isinstance(section, dict):
            expected = f"a [tool.retrypolicy.policies.<name>] table in {PYPROJECT}"
            _expected(problems, prefix, expected, section)
            return [], {}
        root = section
    _top_level(root, prefix, problems)
    policies_path = join_key(prefix, "policies")
    policies = root.get("policies")
    if not isinstance(policies, dict) or not policies:
        _expected(problems, policies_path, f"at least one [{policies_path}.<name>] table", policies)
        return [], {}
    specs: dict[str, _PolicySpec] = {}
    for name, table in policies.items():
        where = join_key(policies_path, name)
        if not name:
            problems.append(f'{where}: expected a non-empty policy name; found ""')
        elif not isinstance(table, dict):
            _expected(problems, where, "a table", table)
        else:
            specs[name] = _policy_spec(name, table, where, problems)
    return sorted(policies), _build_all(specs, problems)


def load_policies(path: str | os.PathLike[str]) -> dict[str, Policy]:
    """Every policy of the TOML file at *path*, by name, in name order.

    Raises:
        ConfigFileError: naming the file and listing every problem in it.
    """
    file = Path(path)
    problems: list[str] = []
    names, built = _load_file(file, problems)
    if problems:
        raise ConfigError.for_file(file, problems)
    return {name: built[name][0] for name in names}


def load_policy(path: str | os.PathLike[str], profile: str | None = None) -> Policy:
    """The policy named *profile* in the TOML file at *path*.

    Without *profile*, a file that defines exactly one policy gives that one.
    The whole file is checked, not only the selected policy, so a typo in a
    policy nobody selects yet is found now rather than on the day it is.

    Raises:
        ConfigFileError: a :class:`~retrypolicy.ConfigError` naming the file and
            listing every problem, each with its key path, what was expected and
            what was found.
        TypeError: *profile* is neither a string nor None.
    """
    return load_policy_with_sources(path, profile)[0]


CHOOSE_BY_ARGUMENT: Final = "profile= (or RETRYPOLICY_PROFILE)"
"""How a caller of :func:`load_policy` chooses one policy of several (the library's words)."""


def load_policy_with_sources(
    path: str | os.PathLike[str], profile: str | None = None, *, choose: str = CHOOSE_BY_ARGUMENT
) -> tuple[Policy, PolicySources]:
    """:func:`load_policy`, and where each value of the policy was written.

    The sources are kept apart from the policy so that they play no part in its
    equality: ``retrypolicy explain`` shows them. Raises as :func:`load_policy`.
    *choose* says how the caller's user chooses a policy of several (the command
    line: ``--profile P``), for the error of a file that defines several.
    """
    if profile is not None and not isinstance(profile, str):
        raise TypeError(f"profile {profile!r}: expected a policy name (str) or None")
    file = Path(path)
    problems: list[str] = []
    names, built = _load_file(file, problems)
    if profile is not None and names and profile not in names:
        expected = f"one of the file's policies ({', '.join(names)})"
        _expected(problems, "profile", expected, profile, _did_you_mean(profile, names))
    elif profile is None and len(names) > 1:
        problems.append(
            f"profile: expected one of the file's policies ({', '.join(names)}) with "
            f"{choose}, as the file defines several; found none"
        )
    chosen = built.get(profile if profile is not None else names[0]) if names else None
    if problems or chosen is None:
        raise ConfigError.for_file(file, problems)
    return chosen
