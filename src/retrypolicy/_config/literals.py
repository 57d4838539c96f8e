"""TOML literals: how a value is written in a policy file, and shown in a message.

:func:`dump_policy <retrypolicy._config.dump.dump_policy>` writes with these, and
the reader's messages show what a file holds with them, so a problem quotes a
value the way the user would type it (``"503" (string)``, not ``'503'``).
Only the value types a policy holds are covered: this is no general TOML writer.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Final

__all__ = ["either", "join_key", "show", "toml_key", "toml_string", "toml_value"]

_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES: Final = str.maketrans(
    {
        **{chr(c): f"\\u{c:04X}" for c in (*range(0x20), 0x7F)},  # control characters
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\t": "\\t",
        "\n": "\\n",
        "\f": "\\f",
        "\r": "\\r",
    }
)
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_SHOWN_CHARS: Final = 60


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    if _SURROGATE.search(text):
        raise ValueError(f"{text!r}: a lone surrogate cannot be written as TOML")
    return '"' + text.translate(_ESCAPES) + '"'


def toml_key(key: str) -> str:
    """A key as written in a file: bare when TOML allows it, quoted otherwise."""
    return key if _BARE_KEY.match(key) else toml_string(key)


def join_key(path: str, key: str) -> str:
    """The dotted key path of *key* inside the table at *path* (``policies."a.b".deadline``)."""
    return f"{path}.{toml_key(key)}" if path else toml_key(key)


def toml_value(value: object) -> str:
    """A TOML literal for the value types a policy holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))  # int(): an IntEnum would print its name
    if isinstance(value, float):
        return repr(value)  # TOML's own nan, inf and -inf included
    if isinstance(value, str):
        return toml_string(str(value))  # str(): a StrEnum member writes its value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"{value!r}: no TOML form for {type(value).__name__}")


_TOML_TYPES: Final[tuple[tuple[type, str], ...]] = (
    (bool, "boolean"),  # before int: a bool is an int in Python, not in TOML
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (datetime.datetime, "date-time"),  # before date, its base class
    (datetime.date, "date"),
    (datetime.time, "time"),
)


def show(value: object) -> str:
    """``<literal> (<TOML type>)``, shortened: how a message shows what the file holds."""
    if isinstance(value, dict):
        return "a table"
    try:
        text = toml_value(value)
    except (TypeError, ValueError):
        text = str(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 1] + "…"
    kind = next((name for tp, name in _TOML_TYPES if isinstance(value, tp)), type(value).__name__)
    return f"{text} ({kind})"


def either(choices: Sequence[str]) -> str:
    """``"a", "b" or "c"``."""
    quoted = [toml_string(c) for c in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]
