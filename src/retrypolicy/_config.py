"""Policies from TOML files, and back: :func:`load_policy` and :func:`dump_policy`.

A file holds ``[policies.<name>]`` tables (in ``pyproject.toml``: the same under
``[tool.retrypolicy]``). Each policy ``extends`` a built-in profile or another
policy of the file; its own rules are matched before the inherited ones.

Why the reader is written the way it is:

- **Every problem at once.** A user fixing a config file should not play
  whack-a-mole: the whole file is checked (every policy, not only the selected
  one) and one :class:`ConfigFileError` lists each problem with its key path
  (``policies.batch.rules[2].status``), what was expected and what was found.
- **No traceback from inside attrs.** Values are checked here, in TOML's terms
  (a boolean is not an integer), before :class:`~retrypolicy.Policy`,
  :class:`~retrypolicy.Rule` and :class:`~retrypolicy.Backoff` see them; their
  own validators still run, and anything they reject is re-worded with the key path.
- **The schema is data.** :data:`SCHEMA` drives unknown-key detection and is what
  ``docs/configuration.md`` is tested against, so the docs cannot drift.

This module is part of the pure core: it imports only other core modules and
the standard library (``tomllib``); :func:`dump_policy` is a small TOML writer
for exactly the value types a policy needs.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

from ._backoff import JITTERS, Backoff
from ._errors import ConfigError
from ._policy import Policy
from ._profiles import PROFILES
from ._rules import ANY_CODE, Failure, Rule, StatusMatch

__all__ = ["SCHEMA", "ConfigFileError", "Key", "dump_policy", "load_policy"]

T = TypeVar("T")

PYPROJECT: Final = "pyproject.toml"
"""Files with this name are read from their ``[tool.retrypolicy]`` table."""

DEFAULT_EXTENDS: Final = "eugpt"
"""What a policy inherits when it does not say: the default profile everywhere else too."""

DEFAULT_RETRIES: Final = 2
"""``max_retries`` of a rule that says ``retry = true`` and no more ("once or twice")."""


# -- the error ---------------------------------------------------------------------------


class ConfigFileError(ConfigError):
    """A policy file is wrong: ``.path`` names it, ``.problems`` lists every problem found.

    Each problem reads ``<key path>: expected <what>; found <what>``; problems of
    the file as a whole (not found, not TOML) have no key path.
    """

    path: Path

    def __init__(self, path: Path, problems: Sequence[str], *, origin: str = "") -> None:
        self.origin = origin
        where = f"{path} ({origin})" if origin else str(path)
        if len(problems) == 1:
            message = f"{where}: {problems[0]}"
        else:
            listed = "\n".join(f"  - {p}" for p in problems)
            message = f"{where}: {len(problems)} problems:\n{listed}"
        super().__init__(message, path=path, problems=problems)

    def __reduce__(self) -> tuple[Any, ...]:
        # the default would call cls(message): keep the error picklable (multiprocessing)
        return (_rebuild_error, (self.path, self.problems, self.origin))


def _rebuild_error(path: Path, problems: list[str], origin: str) -> ConfigFileError:
    return ConfigFileError(path, problems, origin=origin)


# -- TOML literals (for messages and for dump_policy) ---------------------------------------

_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            msg = f"{text!r}: a lone surrogate cannot be written as TOML"
            raise ValueError(msg)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value: object) -> str:
    """A TOML literal for the value types a policy holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))  # int(): an IntEnum would print its name
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(str(value))  # str(): a StrEnum member writes its value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    msg = f"{value!r}: no TOML form for {type(value).__name__}"
    raise TypeError(msg)


# -- values in messages -------------------------------------------------------------------


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):
        return "date-time"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


_SHOWN_CHARS: Final = 60


def _show(value: object) -> str:
    """``<literal> (<TOML type>)``, shortened: how a message shows what the file holds."""
    if isinstance(value, dict):
        return "a table"
    try:
        text = _value(value)
    except (TypeError, ValueError):
        text = str(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 1] + "…"
    return f"{text} ({_toml_type(value)})"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``did you mean "x"?`` for the closest of *choices*, or "" when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {_string(close[0])}?" if close else ""


def _or(choices: Sequence[str]) -> str:
    """``"a", "b" or "c"``."""
    quoted = [_string(c) for c in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _join(path: str, key: str) -> str:
    return f"{path}.{_key(key)}" if path else _key(key)


# -- the schema --------------------------------------------------------------------------


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
    return f"the parent's; `{_value(value)}` without one"


_STATUS_TYPE: Final = 'integer 100-599, a class like "5xx", or an array of these'
_FAILURE_TYPE: Final = _or([f.value for f in Failure])
_JITTER_TYPE: Final = _or(JITTERS)

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
            "This policy's rules, matched in order before the inherited ones; "
            "the first match wins.",
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
            _JITTER_TYPE,
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
            _STATUS_TYPE,
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
            _FAILURE_TYPE,
            "none",
            "The transport failure this rule matches (no HTTP status).",
        ),
        Key(
            "kind",
            "non-empty string",
            "derived (see below)",
            "The class of outcome: a label for errors, logs and per-kind retry limits.",
        ),
        Key(
            "retry",
            "boolean",
            "`true` if `max_retries` > 0, else `false`",
            "Whether outcomes this rule matches are retried at all.",
        ),
        Key(
            "max_retries",
            "integer >= 0",
            f"`{DEFAULT_RETRIES}` if `retry = true`, else `0`",
            "Retries of this kind before giving up.",
        ),
        Key(
            "advice",
            "string",
            '`""`',
            "What to tell a caller when this rule gives up; carried by the raised error.",
        ),
        Key(
            "backoff",
            "table",
            "the policy's backoff",
            "A backoff for this rule's outcomes; the keys given replace the policy's.",
        ),
    ),
}
"""Every key of the file format by table: ``file`` (the top level, or ``[tool.retrypolicy]``),
``policy``, ``backoff`` (a policy's or a rule's) and ``rule``."""


def _types(section: str) -> dict[str, str]:
    return {k.name: k.type for k in SCHEMA[section]}


# -- checking values ----------------------------------------------------------------------


class _Mark(enum.Enum):
    INVALID = "invalid"
    UNSET = "unset"


_INVALID: Final = _Mark.INVALID
_UNSET: Final = _Mark.UNSET

_Problems: TypeAlias = list[str]
_Check: TypeAlias = Callable[[object, str, str, _Problems], object]
"""``check(value, key_path, expected, problems)``: the value converted, or INVALID."""


def _expected(
    problems: _Problems, path: str, expected: str, value: object, hint: str = ""
) -> Literal[_Mark.INVALID]:
    problems.append(f"{path}: expected {expected}; found {_show(value)}" + _then(hint))
    return _INVALID


def _then(hint: str) -> str:
    return f"; {hint}" if hint else ""


def _as_float(value: object) -> float | None:
    """A TOML integer or float as a float; None for anything else (a bool is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # tomllib does not bound integers; 10**400 is no number of seconds
        return None


def _number_at_least(low: float) -> _Check:
    def check(value: object, path: str, expected: str, problems: _Problems) -> object:
        # bool is an int in Python, not a number in TOML
        number = _as_float(value)
        if number is None or not math.isfinite(number) or number < low:
            return _expected(problems, path, expected, value)
        return number

    return check


def _whole_at_least(low: int, *, or_false: bool = False) -> _Check:
    def check(value: object, path: str, expected: str, problems: _Problems) -> object:
        if or_false and value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return _expected(problems, path, expected, value)
        return value

    return check


def _deadline(value: object, path: str, expected: str, problems: _Problems) -> object:
    if value is False:
        return None
    # infinity passes, as Policy allows it (it means no deadline); NaN fails "> 0"
    number = _as_float(value)
    if number is None or not number > 0:
        return _expected(problems, path, expected, value)
    return number


def _extends(value: object, path: str, expected: str, problems: _Problems) -> object:
    if value is False:
        return None
    return _non_empty_string(value, path, expected, problems)


def _non_empty_string(value: object, path: str, expected: str, problems: _Problems) -> object:
    if not isinstance(value, str) or not value:
        return _expected(problems, path, expected, value)
    return value


def _string_value(value: object, path: str, expected: str, problems: _Problems) -> object:
    if not isinstance(value, str):
        return _expected(problems, path, expected, value)
    return value


def _boolean(value: object, path: str, expected: str, problems: _Problems) -> object:
    if not isinstance(value, bool):
        return _expected(problems, path, expected, value)
    return value


def _one_of(choices: Sequence[str], convert: Callable[[str], object]) -> _Check:
    def check(value: object, path: str, expected: str, problems: _Problems) -> object:
        if not isinstance(value, str) or value not in choices:
            hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
            return _expected(problems, path, expected, value, hint)
        return convert(value)

    return check


_CLASS_RE: Final = re.compile(r"^[1-5]xx$", re.IGNORECASE)


def _status(value: object, path: str, expected: str, problems: _Problems) -> object:
    items = value if isinstance(value, list) else [value]
    if not items:
        return _expected(problems, path, expected, value)
    before = len(problems)
    for i, item in enumerate(items):
        where = f"{path}[{i}]" if isinstance(value, list) else path
        if isinstance(item, bool) or not isinstance(item, int | str):
            _expected(problems, where, expected, item)
        elif isinstance(item, int) and not 100 <= item <= 599:
            _expected(problems, where, "an HTTP status 100-599", item)
        elif isinstance(item, str) and not _CLASS_RE.match(item.strip()):
            hint = "write a status without quotes" if item.strip().isdigit() else ""
            _expected(problems, where, expected, item, hint)
    if len(problems) > before:
        return _INVALID
    try:
        return StatusMatch.parse(value)  # type: ignore[arg-type] # every item checked above
    except (TypeError, ValueError) as e:  # pragma: no cover - the checks above are stricter
        problems.append(f"{path}: {e}")
        return _INVALID


_CHECKS: Final[Mapping[str, Mapping[str, _Check]]] = {
    "file": {},
    "policy": {
        "extends": _extends,
        "max_attempts": _whole_at_least(1, or_false=True),
        "deadline": _deadline,
    },
    "backoff": {
        "initial": _number_at_least(0),
        "multiplier": _number_at_least(1),
        "max_delay": _number_at_least(0),
        "jitter": _one_of(JITTERS, str),
        "max_retry_after": _number_at_least(0),
    },
    "rule": {
        "status": _status,
        "code": _non_empty_string,
        "failure": _one_of([f.value for f in Failure], Failure),
        "kind": _non_empty_string,
        "retry": _boolean,
        "max_retries": _whole_at_least(0),
        "advice": _string_value,
    },
}
"""The value checks of each table; the keys that hold sub-tables are handled by the reader."""

_SUBTABLES: Final[Mapping[str, tuple[str, ...]]] = {
    "file": ("policies",),
    "policy": ("backoff", "rules"),
    "backoff": (),
    "rule": ("backoff",),
}


def _unknown_keys(
    table: Mapping[str, object], section: str, path: str, problems: _Problems
) -> None:
    known = [k.name for k in SCHEMA[section]]
    for key in table:
        if key not in known:
            problems.append(
                f"{_join(path, key)}: unknown key; expected one of: {', '.join(known)}"
                + _then(_did_you_mean(key, known))
            )


def _check_table(
    table: Mapping[str, object], section: str, path: str, problems: _Problems
) -> dict[str, object]:
    """The values of *table* converted by their checks (INVALID where a check failed)."""
    _unknown_keys(table, section, path, problems)
    types = _types(section)
    return {
        key: check(table[key], _join(path, key), types[key], problems)
        for key, check in _CHECKS[section].items()
        if key in table
    }


def _subtable(
    table: Mapping[str, object], key: str, path: str, problems: _Problems
) -> dict[str, Any] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        _expected(problems, _join(path, key), "a table", value)
        return None
    return value


def _backoff_changes(
    table: Mapping[str, object], path: str, problems: _Problems
) -> dict[str, Any] | None:
    """The checked keys of the ``backoff`` sub-table of *table*, or None if it has none."""
    sub = _subtable(table, "backoff", path, problems)
    return None if sub is None else _check_table(sub, "backoff", _join(path, "backoff"), problems)


# -- the file, checked ---------------------------------------------------------------------


@attrs.frozen
class _RuleSpec:
    path: str
    status: StatusMatch | None
    code: str | None
    failure: Failure | None
    kind: str | None
    retry: bool | None
    max_retries: int | None
    advice: str
    backoff: dict[str, Any] | None


@attrs.frozen
class _PolicySpec:
    name: str
    path: str
    extends: str | _Mark | None
    """A parent's name, None for ``extends = false``, or INVALID."""
    max_attempts: int | _Mark | None
    """A limit, None for ``false``, or UNSET (inherit)."""
    deadline: float | _Mark | None
    backoff: dict[str, Any]
    rules: list[_RuleSpec]
    valid: bool
    """False when any of this policy's own values were rejected: it is then not built."""


def _get(got: Mapping[str, object], key: str, tp: type[T]) -> T | None:
    """A value a check accepted, narrowed for the type checker; None if the key is absent."""
    value = got.get(key)
    if value is None:
        return None
    assert isinstance(value, tp)  # noqa: S101 - the checks guarantee it; not input checking
    return value


def _rule_spec(table: Mapping[str, object], path: str, problems: _Problems) -> _RuleSpec | None:
    before = len(problems)
    got = _check_table(table, "rule", path, problems)
    backoff = _backoff_changes(table, path, problems)
    if not any(k in table for k in ("status", "code", "failure")):
        problems.append(
            f"{path}: expected at least one of status, code, failure to match on; found none"
        )
    if len(problems) > before:
        return None
    return _RuleSpec(
        path=path,
        status=_get(got, "status", StatusMatch),
        code=_get(got, "code", str),
        failure=_get(got, "failure", Failure),
        kind=_get(got, "kind", str),
        retry=_get(got, "retry", bool),
        max_retries=_get(got, "max_retries", int),
        advice=_get(got, "advice", str) or "",
        backoff=backoff,
    )


def _policy_spec(
    name: str, table: Mapping[str, object], path: str, problems: _Problems
) -> _PolicySpec:
    before = len(problems)
    got = _check_table(table, "policy", path, problems)
    backoff = _backoff_changes(table, path, problems) or {}
    rules: list[_RuleSpec] = []
    raw_rules = table.get("rules", [])
    rules_path = _join(path, "rules")
    if not isinstance(raw_rules, list):
        hint = (
            f"write [[{rules_path}]], not [{rules_path}]: " if isinstance(raw_rules, dict) else ""
        )
        _expected(problems, rules_path, "an array of tables", raw_rules, hint)
        raw_rules = []
    for i, raw in enumerate(raw_rules):
        where = f"{rules_path}[{i}]"
        if not isinstance(raw, dict):
            _expected(problems, where, "a table", raw)
        elif (spec := _rule_spec(raw, where, problems)) is not None:
            rules.append(spec)
    limits: dict[str, Any] = {k: got.get(k, _UNSET) for k in ("max_attempts", "deadline")}
    extends: Any = got.get("extends", DEFAULT_EXTENDS)
    return _PolicySpec(
        name=name,
        path=path,
        extends=extends,
        **limits,
        backoff=backoff,
        rules=rules,
        valid=len(problems) == before,
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


def _check_parents(specs: Mapping[str, _PolicySpec], problems: _Problems) -> set[str]:
    """Report unknown parents and extends cycles; the names that cannot be built."""
    broken: set[str] = set()
    for spec in specs.values():
        ext = spec.extends
        if not isinstance(ext, str) or ext in PROFILES or _parent_in_file(spec, specs):
            continue
        known = sorted({*PROFILES, *(n for n in specs if n != spec.name)})
        why = "a policy cannot extend itself" if ext == spec.name else _did_you_mean(ext, known)
        problems.append(
            f"{_join(spec.path, 'extends')}: expected a built-in profile or a policy of this "
            f"file ({', '.join(known)}), or false; found {_show(ext)}{_then(why)}"
        )
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
                        f"{_join(specs[ordered[0]].path, 'extends')}: expected a chain of "
                        f"policies ending in a built-in profile or extends = false; found a "
                        f"cycle {' -> '.join([*ordered, ordered[0]])}"
                    )
                break
            chain.append(parent)
    return broken


def _build_all(specs: Mapping[str, _PolicySpec], problems: _Problems) -> dict[str, Policy]:
    """Every policy that can be built: parents first, each built once."""
    broken = _check_parents(specs, problems)
    built: dict[str, Policy | None] = {}

    def build(name: str) -> Policy | None:
        if name not in built:
            spec = specs[name]
            policy: Policy | None = None
            if spec.valid and name not in broken:
                in_file = _parent_in_file(spec, specs)
                if in_file is not None:
                    parent = build(in_file)
                    policy = None if parent is None else _build(spec, parent, problems)
                else:
                    ext = spec.extends
                    policy = _build(spec, PROFILES[ext] if isinstance(ext, str) else None, problems)
            built[name] = policy
        return built[name]

    return {name: p for name in specs if (p := build(name)) is not None}


def _build(spec: _PolicySpec, parent: Policy | None, problems: _Problems) -> Policy | None:
    """The policy *spec* describes on top of *parent*; None (and problems) if attrs refuses."""
    before = len(problems)
    try:
        backoff = attrs.evolve(parent.backoff if parent else Backoff(), **spec.backoff)
    except (TypeError, ValueError) as e:  # pragma: no cover - the checks are stricter
        problems.append(f"{_join(spec.path, 'backoff')}: {e}")
        return None
    inherited = parent.rules if parent is not None else ()
    rules: list[Rule] = []
    for r in spec.rules:
        try:
            rules.append(_rule_from(r, inherited, backoff))
        except (TypeError, ValueError) as e:  # pragma: no cover - the checks are stricter
            problems.append(f"{r.path}: {e}")
    max_attempts = spec.max_attempts
    if max_attempts is _UNSET:
        max_attempts = parent.max_attempts if parent else None
    deadline = spec.deadline
    if deadline is _UNSET:
        deadline = parent.deadline if parent else None
    if len(problems) > before or max_attempts is _INVALID or deadline is _INVALID:
        return None  # pragma: no cover - an invalid spec is not built
    try:
        return Policy(
            name=spec.name,
            rules=(*rules, *inherited),
            backoff=backoff,
            max_attempts=max_attempts,
            deadline=deadline,
        )
    except (TypeError, ValueError) as e:  # pragma: no cover - the checks are stricter
        problems.append(f"{spec.path}: {e}")
        return None


def _rule_from(spec: _RuleSpec, inherited: Sequence[Rule], policy_backoff: Backoff) -> Rule:
    retry = spec.retry if spec.retry is not None else (spec.max_retries or 0) > 0
    max_retries = spec.max_retries
    if max_retries is None:
        max_retries = DEFAULT_RETRIES if retry else 0
    return Rule(
        kind=spec.kind if spec.kind is not None else _derived_kind(spec, inherited),
        retry=retry,
        max_retries=max_retries,
        status=spec.status,
        code=spec.code,
        failure=spec.failure,
        advice=spec.advice,
        backoff=None if spec.backoff is None else attrs.evolve(policy_backoff, **spec.backoff),
    )


def _derived_kind(spec: _RuleSpec, inherited: Sequence[Rule]) -> str:
    """The label of a rule written without ``kind``.

    The kind the inherited rules give the same outcome, when all of the rule's
    statuses get the same one — so ``status = 503`` under ``eugpt`` stays
    ``unavailable`` and still raises ``ServiceUnavailableError``. Otherwise by
    status class (``client_error``, ``server_error``), else the failure's name,
    else ``custom``. A status class such as ``"5xx"`` is labelled by its class.
    """
    status = spec.status
    if status is None or not status.classes:
        probes: list[int | None] = [*sorted(status.codes)] if status is not None else [None]
        kinds = {
            next((r.kind for r in inherited if r.matches(s, spec.code, spec.failure)), None)
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
    if spec.failure is not None and spec.code is None:
        return spec.failure.value
    return "custom"


# -- reading -----------------------------------------------------------------------------


def _read(path: Path, problems: _Problems) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append("cannot read the policy file: expected an existing file; found none")
        return None
    except OSError as e:
        problems.append(f"cannot read the policy file: expected a readable file; found {e}")
        return None
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        problems.append(
            f"cannot read the policy file: expected UTF-8 text (TOML); "
            f"found byte 0x{data[e.start]:02x} on line {line}"
        )
        return None
    try:
        return tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, and the int-digits limit tomllib hits raw
        problems.append(f"invalid TOML: {e}")
        return None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        problems.append("invalid TOML: arrays or inline tables nested too deeply")
        return None


def _top_level(root: Mapping[str, object], prefix: str, problems: _Problems) -> None:
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
            hint = f"did you mean [{_join(_join(prefix, 'policies'), key)}]?"
        problems.append(
            f"{_join(prefix, key)}: unknown key; expected one of: policies{_then(hint)}"
        )


def _load_file(path: Path, problems: _Problems) -> tuple[list[str], dict[str, Policy]]:
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
            found = "none" if section is None else _show(section)
            problems.append(
                f"{prefix}: expected a [tool.retrypolicy.policies.<name>] table in "
                f"{PYPROJECT}; found {found}"
            )
            return [], {}
        root = section
    _top_level(root, prefix, problems)
    policies_path = _join(prefix, "policies")
    policies = root.get("policies")
    if not isinstance(policies, dict) or not policies:
        found = "none" if policies is None else _show(policies)
        problems.append(
            f"{policies_path}: expected at least one [{policies_path}.<name>] table; found {found}"
        )
        return [], {}
    specs: dict[str, _PolicySpec] = {}
    for name, table in policies.items():
        where = _join(policies_path, name)
        if not name:
            problems.append(f'{where}: expected a non-empty policy name; found ""')
        elif not isinstance(table, dict):
            _expected(problems, where, "a table", table)
        else:
            specs[name] = _policy_spec(name, table, where, problems)
    return sorted(policies), _build_all(specs, problems)


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
    if profile is not None and not isinstance(profile, str):
        msg = f"profile {profile!r}: expected a policy name (str) or None"
        raise TypeError(msg)
    file = Path(path)
    problems: _Problems = []
    names, policies = _load_file(file, problems)
    if profile is not None and names and profile not in names:
        problems.append(
            f"profile: expected one of the file's policies ({', '.join(names)}); "
            f"found {_show(profile)}{_then(_did_you_mean(profile, names))}"
        )
    elif profile is None and len(names) > 1:
        problems.append(
            f"profile: expected one of the file's policies ({', '.join(names)}) with "
            "profile= (or RETRYPOLICY_PROFILE), as the file defines several; found none"
        )
    chosen = policies.get(profile if profile is not None else names[0]) if names else None
    if problems or chosen is None:
        raise ConfigFileError(file, problems)
    return chosen


# -- writing ---------------------------------------------------------------------------


def _backoff_lines(backoff: Backoff) -> list[str]:
    return [f"{k.name} = {_value(getattr(backoff, k.name))}" for k in SCHEMA["backoff"]]


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
        msg = "policy name '': expected a non-empty name to write as [policies.<name>]"
        raise ConfigError(msg)
    head = f"policies.{_key(policy.name)}"
    lines = [
        f"# The retrypolicy policy {_string(policy.name)}, self-contained: it inherits nothing.",
        f"[{head}]",
        "extends = false",
        "max_attempts = "
        + (_value(policy.max_attempts) if policy.max_attempts is not None else "false"),
        "deadline = " + (_value(policy.deadline) if policy.deadline is not None else "false"),
        "",
        f"[{head}.backoff]",
        *_backoff_lines(policy.backoff),
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
        lines += [f"{k} = {_value(v)}" for k, v in values.items() if v is not None]
        if rule.backoff is not None:
            lines += [f"[{head}.rules.backoff]", *_backoff_lines(rule.backoff)]
    return "\n".join(lines) + "\n"
