"""The monitor's cheap reading of an event: its top-level ``type`` and ``sequence_number``.

Why: parsing the JSON of every delta would cost more than decoding the stream. Anchored
patterns read the two members soundly for valid JSON; only error events and frames the
patterns cannot settle are parsed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from ._raw import SEQ_LAST_WINDOW, LazyData

__all__ = ["HEAD_COMPACT", "loads", "read_slow", "stand_in"]

# The monitor's cheap reading of an event's data, sound for valid JSON:
# ``{"type":"<no escapes>"`` at the very start of the data is the first member of the
# top-level object, so the type read there is the top-level type, whatever strings or
# nested objects follow (a delta *containing* ``"type":"error"`` has it escaped or
# nested, never first). An immediately following ``"sequence_number":<int>`` ended by
# ``,`` or ``}`` is the second top-level member. Digits are [0-9] (``\d`` would admit
# non-ASCII digits), at most 18, so int() is cheap and never hits the int-string limit.
# HEAD_COMPACT, tried first, is the layout of every EU GPT frame (compact encoder, type
# then sequence number), so a match always yields both; _HEAD (see read_slow) allows
# JSON whitespace, which is exactly these four characters (``\s`` would admit more),
# and a missing sequence number.
_WS: Final = r"[ \t\n\r]*"
HEAD_COMPACT: Final = re.compile(r'\{"type":"([^"\\]*)","sequence_number":(-?[0-9]{1,18})(?=[,}])')
_HEAD: Final = re.compile(
    rf'{_WS}\{{{_WS}"type"{_WS}:{_WS}"([^"\\]*)"'
    rf'(?:{_WS},{_WS}"sequence_number"{_WS}:{_WS}(-?[0-9]{{1,18}})(?={_WS}[,}}]))?'
)
# ``,"sequence_number":<int>}`` ending the data is the last member of the top-level
# object: the final ``}`` of a JSON object text closes the top level, and the text
# right before it cannot be inside a string (the string would never be closed).
_SEQ_LAST: Final = re.compile(
    rf',{_WS}"sequence_number"{_WS}:{_WS}(-?[0-9]{{1,18}}){_WS}\}}{_WS}\Z'
)
_SEQ_KEY: Final = '"sequence_number"'
_SEQ_KEY_BYTES: Final = _SEQ_KEY.encode()
# Whether _HEAD, having matched a type without a sequence number in a window of the data,
# would also find none in the whole data: the next non-whitespace character is not a comma,
# or the comma is followed by a complete 17-character member name that is not
# ``"sequence_number"`` (in the window, so the window's end cannot have cut it short).
_NO_SEQ: Final = re.compile(rf"{_WS}(?:[^ \t\n\r,]|,{_WS}(?!{_SEQ_KEY})[^ \t\n\r].{{16}})", re.S)


def loads(data: str) -> Any:
    """``json.loads``, or ``None`` for anything that is not JSON: remote data never raises."""
    try:
        return json.loads(data)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError: remote data never raises
        return None


def read_slow(data: str) -> tuple[str | None, int | None]:
    """The event's top-level ``type`` and ``sequence_number`` when the compact pattern
    did not match: whitespace, or no sequence number or not second, or no type first.
    Parses the JSON only as the last resort."""
    m = _HEAD.match(data)  # also matches wherever HEAD_COMPACT's type part would
    if m is not None:
        etype, seq_text = m.groups()
        if seq_text is not None:
            return etype, int(seq_text)
        if _SEQ_KEY not in data:
            return etype, None
        at_end = _SEQ_LAST.search(data, max(0, len(data) - SEQ_LAST_WINDOW))
        if at_end is not None:
            return etype, int(at_end.group(1))
        return etype, _seq_of(loads(data))
    obj = loads(data)
    if not isinstance(obj, dict):
        return None, None  # not a JSON object: no type, no sequence number
    etype = obj.get("type")
    return (etype if isinstance(etype, str) else None), _seq_of(obj)


def stand_in(name: str, data: LazyData, error_type: str) -> str:
    """What StreamMonitor._inspect is given for *data*: a short text it reads exactly as it
    would read the data (same type, same sequence number, not an error), or, when a window
    at the start (and one at the end) of the data cannot settle that, the data itself.

    Sound by the same arguments as read_slow: a match of HEAD_COMPACT or _HEAD (with a
    sequence number) inside the head window is the match on the whole data; _NO_SEQ makes
    sure the window's end did not cut off a sequence number; _SEQ_LAST only ever matches
    ASCII, so the last SEQ_LAST_WINDOW bytes hold exactly the matches the last
    SEQ_LAST_WINDOW characters do.
    """
    if name != error_type:
        head = data.head()
        m = HEAD_COMPACT.match(head)
        if m is not None:
            if m[1] != error_type:
                return m[0] + "}"
        else:
            m = _HEAD.match(head)
            if m is not None and m[1] != error_type:
                etype, seq_text = m.groups()
                if seq_text is None and _NO_SEQ.match(head, m.end()):
                    if not data.contains(_SEQ_KEY_BYTES):
                        return f'{{"type":"{etype}"}}'
                    at_end = _SEQ_LAST.search(data.tail())
                    if at_end is not None:
                        seq_text = at_end[1]
                if seq_text is not None:
                    return f'{{"type":"{etype}","sequence_number":{seq_text}}}'
    return str(data)


def _seq_of(obj: Any) -> int | None:
    if isinstance(obj, dict):
        seq = obj.get("sequence_number")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None
