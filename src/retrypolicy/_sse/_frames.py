"""The decoder's text fast path: runs of ordinary frames in one or two pattern passes.

Why: EU GPT sends every frame as ``event: message`` + one ``data:`` line + a blank line,
tens of thousands per response; handling them line by line in Python is most of the
cost. These patterns take a run of such frames at once; anything else falls back to the
exact decoder's line handling, and a differential test keeps the two equal.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ._event import DEFAULT_MAX_LINE_BYTES, SSEEvent
from ._exact import ExactDecoder

__all__ = ["SSEDecoder"]

# The decoder's fast paths work on text whose line ends are all "\n".
#
# An ordinary frame: an optional ``event:`` line, exactly one ``data:`` line, a blank
# line. _FRAMES finds where a run of them ends (no captures, so it is cheap); _FRAME
# then extracts (event, data) of each frame in that run.
_FRAME: Final = re.compile(r"(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n")
# _FRAMES uses possessive quantifiers: a line ends at its first LF whatever the optional
# space, so giving characters back can never help, and a partial last frame is rejected
# after one scan instead of being scanned again for each way to backtrack.
_FRAMES: Final = re.compile(r"(?:(?:event: ?+[^\n]*+\n)?data: ?+[^\n]*+\n\n)*")
# The two shapes real servers send every frame in (EU GPT uses the first). Each has
# a fixed prefix, so a run of them is checked by length alone (see SSEDecoder._exact).
_EVENT_PREFIX: Final = "event: message\ndata: "
_DATA_PREFIX: Final = "data: "
_EXACT_EVENT: Final = re.compile(r"event: message\ndata: ([^\n]*)\n\n")
_EXACT_DATA: Final = re.compile(r"data: ([^\n]*)\n\n")
_EXACT_PREFIXES: Final = (_EVENT_PREFIX, _DATA_PREFIX)


class SSEDecoder(ExactDecoder):
    """Incremental WHATWG event-stream decoder: bytes in, :class:`SSEEvent` s out.

    The :class:`~._exact.ExactDecoder` (limits, :attr:`pending`, :attr:`overflowed`,
    never raising on remote data), with its line-by-line step replaced by pattern
    passes over runs of ordinary frames. Speed comes from doing the per-byte work in
    C: a chunk of identically shaped frames (EU GPT's ``event: message`` + one
    ``data:`` line + blank line) is extracted by one ``findall`` and verified by a
    length sum; other runs of ordinary frames (any ``event:`` name) take one pass to
    find and one to extract; only unusual lines go through the per-line state
    machine. The patterns only ever see complete lines.
    """

    __slots__ = ("_window",)

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        *,
        max_event_bytes: int | None = None,
    ) -> None:
        super().__init__(max_line_bytes, max_event_bytes=max_event_bytes)
        # the fast path only looks at windows of at most a quarter of the limits'
        # characters: whatever it finds there is within them without measuring
        self._window = min(self._max_line, self._max_event) // 4

    def _run(self, text: str, pos: int, end: int, out: list[Any], *, pairs: bool) -> None:
        """Process the complete lines of ``text[pos:end]`` (``text[end - 1]`` is a LF)."""
        window = self._window
        frames_end = _FRAMES.match
        exact = True  # the uniform-run path is given up for this text once it fails
        while pos < end:
            if not self._dirty:
                # Between events: take the longest run of frames in one go.
                if exact and text.startswith(_EXACT_PREFIXES, pos):
                    start = pos
                    pos = self._exact(text, pos, min(end, pos + window), out, pairs=pairs)
                    if pos > start:
                        continue  # the window may have cut the run: try the next one
                    exact = False  # a failure costs a scan: at most one per text
                run_end = frames_end(text, pos, min(end, pos + window)).end()  # type: ignore[union-attr] # the pattern matches the empty string
                if run_end > pos:
                    found = _FRAME.findall(text, pos, run_end)
                    if pairs:
                        out.extend([(e or "message", d) for e, d in found])
                    else:
                        lid = self._last_id
                        out.extend([SSEEvent(e or "message", d, lid, None) for e, d in found])
                    pos = run_end
                    if pos == end:
                        return
            lf = text.find("\n", pos, end)
            self._line(text[pos:lf], out, pairs=pairs)
            pos = lf + 1

    def _exact(self, text: str, pos: int, stop: int, out: list[Any], *, pairs: bool) -> int:
        """Dispatch a run of identically shaped frames in ``text[pos:stop]``; return its end.

        *pos* starts with one of _EXACT_PREFIXES, which sets the shape. One ``findall``
        pass and a length sum: the matches do not overlap, so if their lengths add up to
        the length of the region they tile it exactly, frame by frame, which is what
        line-by-line parsing from a clean state would have seen.
        """
        stop = text.rfind("\n\n", pos, stop)
        if stop < 0:
            return pos
        stop += 2
        if text.startswith(_EVENT_PREFIX, pos):
            found = _EXACT_EVENT.findall(text, pos, stop)
            overhead = len(_EVENT_PREFIX) + 2
        else:
            found = _EXACT_DATA.findall(text, pos, stop)
            overhead = len(_DATA_PREFIX) + 2
        if sum(map(len, found)) + overhead * len(found) != stop - pos:
            return pos
        if pairs:
            out.extend(zip(["message"] * len(found), found, strict=True))
        else:
            lid = self._last_id
            out.extend([SSEEvent("message", d, lid, None) for d in found])
        return stop
