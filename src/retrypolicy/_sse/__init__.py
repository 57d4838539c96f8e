"""Server-sent events: an incremental decoder and the verdict on an EU GPT stream.

Why this exists: a ``200`` stream is not a success. The spec says a response
stream succeeded only when its *last* event is ``response.completed``; a
failure after streaming began arrives as an ``error`` event, and a dropped
connection leaves a stream with neither. The adapters therefore have to watch
every byte of every streamed body, so the watcher sits on the hot path of each
streamed response and must cost little more than reading the bytes.

One job per module:

* :mod:`._exact` — :class:`~._exact.ExactDecoder`, the WHATWG event-stream
  algorithm (LF / CR / CRLF line ends split anywhere, even inside a UTF-8
  character, one leading BOM skipped, comments, ``event`` / ``data`` / ``id`` /
  ``retry`` fields, events without data not dispatched, an unterminated event
  discarded at end of stream, bounded lines and events), one line at a time;
* :mod:`._frames` — :class:`SSEDecoder`, the same decoder with its text fast path:
  runs of ordinary frames extracted by one or two pattern passes;
* :mod:`._bytes` — the monitor's bytes path: a long line (a 64 KiB ``data:`` line
  over many reads) kept as the raw chunks it arrives in, searched only for its end
  (:mod:`._raw` holds such a value);
* :mod:`._head` — the cheap reading of an event's top-level ``type`` and
  ``sequence_number``, parsing JSON only when it must;
* :mod:`._monitor` — :class:`StreamMonitor`, which answers "did this stream
  succeed?" incrementally, as :class:`StreamProblem` or ``None``;
* :mod:`._boundary` — :func:`bytes_before_event`, where a failing frame begins.

The differential tests (``tests/test_sse.py``) hold the fast paths to the exact
decoder. Nothing here ever raises on remote data, and memory stays bounded.
"""

from ._boundary import bytes_before_event
from ._event import DEFAULT_MAX_LINE_BYTES, SSEEvent
from ._frames import SSEDecoder
from ._monitor import StreamMonitor, StreamProblem

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "SSEDecoder",
    "SSEEvent",
    "StreamMonitor",
    "StreamProblem",
    "bytes_before_event",
]
