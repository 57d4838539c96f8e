"""Trace files: what a user's logs recorded, read into a scenario effect.

A trace is CSV (with a header row) or JSON Lines (one object per line), one request per
row: ``t`` — seconds from the start of the trace (``time``/``offset`` also accepted) —
then ``status`` (an HTTP status) or ``kind`` (a failure kind: ``connection``,
``timeout``, ``upstream_timeout``...), and optionally ``retry_after`` (what the
``Retry-After`` header said). The rows are grouped per second; the simulated service
answers a request sent in second *n* like one of the requests recorded in that second.

A trace is the user's own file: a bad row is an error naming the file, the line and
what was expected (not silently skipped: a replay that dropped rows would mislead).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs

from .._errors import ConfigError
from ._effects import Answer, Effect, answer_of

__all__ = ["MAX_SECONDS", "read_trace"]

_TIME_KEYS: Final = ("t", "time", "offset")
MAX_SECONDS: Final = 31 * 24 * 3600
"""A trace longer than a month is a mistake (a Unix timestamp in ``t``?), not a replay."""


def _rows(path: Path) -> Iterator[tuple[int, Mapping[str, object]]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise _error(path, number, f"not JSON ({e.args[0]})") from None
            if not isinstance(row, dict):
                raise _error(path, number, "expected a JSON object")
            yield number, row
        return
    reader = csv.DictReader(text.splitlines())
    for row in reader:
        yield reader.line_num, {k.strip().lower(): v for k, v in row.items() if k is not None}


def _error(path: Path, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{path}:{line}: {problem}")


def _time(row: Mapping[str, object], path: Path, line: int) -> float:
    for key in _TIME_KEYS:
        value = row.get(key)
        if value not in (None, ""):
            break
    else:
        raise _error(path, line, "no time: expected a column t (seconds from the start)")
    try:
        t = float(value)  # type: ignore[arg-type] # str or number; anything else raises
    except (TypeError, ValueError):
        raise _error(path, line, f"t {value!r}: expected a number of seconds") from None
    if not 0 <= t <= MAX_SECONDS:
        raise _error(path, line, f"t {value!r}: expected seconds from the start, 0-{MAX_SECONDS}")
    return t


def _answer(row: Mapping[str, object], path: Path, line: int) -> Answer | None:
    status, kind = row.get("status"), row.get("kind")
    what = status if status not in (None, "") else kind
    if what in (None, ""):
        raise _error(path, line, "expected a status (e.g. 503) or a kind (e.g. connection)")
    try:
        answer = answer_of(what, where="status" if what is status else "kind")  # type: ignore[arg-type]
    except ValueError as e:
        raise _error(path, line, str(e)) from None
    hint = row.get("retry_after")
    if answer is None or hint in (None, ""):
        return answer
    return attrs.evolve(answer, headers=(("retry-after", str(hint)),))


def read_trace(path: str | Path, *, at: float = 0.0) -> Effect:
    """The effect that replays *path* from second *at* of the simulation.

    Raises :class:`~retrypolicy.ConfigError` (a ValueError) naming the file and line of
    a bad row, or the file when it cannot be read or holds no rows.
    """
    file = Path(path)
    try:
        rows = list(_rows(file))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        msg = f"{file}: cannot read the trace ({e})"
        raise ConfigError(msg) from None
    if not rows:
        msg = f"{file}: no rows (expected CSV with a header row, or JSON Lines)"
        raise ConfigError(msg)
    per: dict[int, list[Answer | None]] = {}
    failing: list[int] = []
    for line, row in rows:
        second = int(_time(row, file, line))
        answer = _answer(row, file, line)
        per.setdefault(second, []).append(answer)
        if answer is not None:
            failing.append(second)
    length = max(per) + 1
    bins = tuple(tuple(per.get(s, ())) for s in range(length))
    start = float(at)
    bad = (start + min(failing), start + max(failing) + 1.0) if failing else None
    if not math.isfinite(start) or start < 0:
        msg = f"at {at!r}: expected a number of seconds >= 0"
        raise ValueError(msg)
    return Effect("trace", start, start + length, bins=bins, bad=bad)
