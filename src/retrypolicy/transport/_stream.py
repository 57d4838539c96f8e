"""An event stream judged while it is read: the stream check adapters wrap around a body."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Final

from .._backoff import header_value
from .._envelope import ErrorInfo
from .._errors import StreamError, api_error
from .._outcome import Outcome, mark_exhausted
from .._policy import Policy
from .._redact import redact
from .._sse import StreamMonitor as _StreamMonitor
from .._sse import StreamProblem
from .._sse import bytes_before_event as _bytes_before_event
from ._decoding import ContentDecoder
from ._limits import MAX_PRIME_BYTES, PREAMBLE_TYPES

__all__ = ["StreamCheck", "is_event_stream"]


def is_event_stream(
    headers: object, *, method: str | None = None, status: int | None = None
) -> bool:
    """True for a ``text/event-stream`` response (the header's name and value in any case).

    ``Content-Type`` sent on several lines (or as a list) is read as the Fetch
    standard reads it: the last value that is a media type wins.

    Given the request's *method* and the response's *status*, a response that has
    no body by definition — to a ``HEAD``, or a 1xx, 204, 205 or 304 — is no stream,
    whatever its ``Content-Type`` says (a ``HEAD`` answers with the headers a
    ``POST`` would get): there is nothing to check, and its empty body is no stream
    that ended without ``response.completed``.
    """
    if (status is not None and (status < 200 or status in _BODILESS)) or (
        method is not None and method.upper() == "HEAD"
    ):
        return False
    ctype = header_value(headers, "content-type")
    if ctype is None:
        return False
    if "," not in ctype:  # one value: the common case
        return ctype.split(";", 1)[0].strip().lower() == _EVENT_STREAM
    for value in reversed(_list_values(ctype)):
        if (essence := _essence(value)) is not None:
            return essence == _EVENT_STREAM
    return False


_EVENT_STREAM: Final = "text/event-stream"
_BODILESS: Final = frozenset({204, 205, 304})
"""Statuses whose responses have no body (RFC 9110 6.4.1; 205: 15.3.6)."""
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _essence(value: str) -> str | None:
    """The media type of one ``Content-Type`` value, lower case (``text/event-stream``),
    parameters left out; None when *value* is none (Fetch skips those, and ``*/*``)."""
    essence = value.split(";", 1)[0].strip().lower()
    kind, slash, subtype = essence.partition("/")
    if not slash or essence == "*/*" or not _TOKEN.fullmatch(kind):
        return None
    return essence if _TOKEN.fullmatch(subtype) else None


def _list_values(text: str) -> list[str]:
    """The comma-separated values of a combined field, a quoted string kept whole
    (``text/plain; note="a, b"`` is one value). Linear in *text*."""
    values: list[str] = []
    held: list[str] = []
    quoted = False
    for piece in text.split(","):
        held.append(piece)
        if (piece.count('"') - piece.count('\\"')) % 2:
            quoted = not quoted
        if not quoted:
            values.append(",".join(held))
            held = []
    if held:
        values.append(",".join(held))
    return values


class StreamCheck:
    """An event stream judged while it is read (gRPC's commit rule included).

    Feed it the chunks as they arrive (:meth:`feed`), then :meth:`close` at the
    end or :meth:`lost` when the connection broke; each returns the stream's
    :class:`StreamProblem` or None. A stream that delivered the completion
    event is a success whatever the connection does next. :attr:`committed`
    turns True once an event past the preamble arrived, or
    :data:`MAX_PRIME_BYTES` were read: from then on the caller has the stream
    and a failure surfaces as ``rp.StreamError`` instead of a silent retry.
    """

    __slots__ = (
        "_decoder",
        "_ended_by",
        "_monitor",
        "_size",
        "attempts",
        "exhausted",
        "policy",
        "preamble",
    )

    def __init__(
        self,
        policy: Policy,
        *,
        preamble: frozenset[str] = PREAMBLE_TYPES,
        content_encoding: str | None = None,
    ) -> None:
        self.policy = policy
        self.preamble = preamble
        self._monitor = _StreamMonitor()
        decoder = ContentDecoder(content_encoding)
        self._decoder = None if decoder.identity else decoder
        self._size = 0
        self._ended_by: StreamProblem | None = None
        self.attempts = 1
        """The attempts behind this stream (set by the adapter when it hands it over)."""
        self.exhausted = False
        """True when the policy already retried this stream's failures to the end."""

    @property
    def committed(self) -> bool:
        """True once the caller must get the stream: content arrived, or enough was read."""
        m = self._monitor
        return self._size >= MAX_PRIME_BYTES or (
            m.events_seen > 0 and m.last_type not in self.preamble
        )

    @property
    def completed(self) -> bool:
        """True once the completion event arrived without a problem."""
        return self._monitor.completed

    @property
    def problem(self) -> StreamProblem | None:
        """The problem found so far (by :meth:`feed`, :meth:`close` or :meth:`lost`)."""
        return self._ended_by or self._monitor.problem

    def feed(self, chunk: bytes) -> StreamProblem | None:
        """Judge one chunk as it came off the transport; the problem as soon as there is one."""
        self._size += len(chunk)
        decoder = self._decoder
        if decoder is None:
            return self._monitor.feed(chunk)
        problem = None
        for piece in decoder.decode(chunk):
            problem = self._monitor.feed(piece)
            if problem is not None:
                return problem
        if decoder.failed:
            return self._undecodable()
        return problem

    def close(self) -> StreamProblem | None:
        """The stream ended: None when it completed, else why it is no success."""
        if self._ended_by is not None:
            return self._ended_by
        if self._decoder is not None and self._decoder.failed:
            return self._undecodable()
        return self._monitor.finish()

    def lost(self, exc: BaseException) -> StreamProblem | None:
        """The connection broke with *exc*: None when the stream had already completed."""
        m = self._monitor
        if m.problem is not None:
            return m.problem
        if m.completed:
            return None
        if self._ended_by is None:
            self._ended_by = StreamProblem.incomplete(
                f"connection lost after {m.events_seen} events without response.completed "
                f"({type(exc).__name__})",
                m.events_seen,
            )
        return self._ended_by

    def _undecodable(self) -> StreamProblem:
        if self._ended_by is None:
            self._ended_by = StreamProblem.incomplete(
                "the stream's Content-Encoding could not be decoded: it cannot be verified",
                self._monitor.events_seen,
            )
        return self._ended_by

    def outcome(self, problem: StreamProblem, status: int = 200) -> Outcome:
        """The outcome of a stream that failed with *problem* before it was committed."""
        return Outcome(
            status=status,
            code=problem.code,
            failure=problem.failure,
            error=ErrorInfo(status, problem.code, None, redact(problem.message)),
        )

    def error(self, problem: StreamProblem) -> StreamError:
        """The ``rp.StreamError`` for *problem*, classified by the policy."""
        c = self.policy.classify(200, problem.code, failure=problem.failure)
        info = ErrorInfo(200, problem.code, None, redact(problem.message))
        err = api_error(c, info, attempts=self.attempts, stream=True)
        assert isinstance(err, StreamError)  # noqa: S101 - stream=True guarantees it
        if self.exhausted and c.retryable:
            mark_exhausted(err)
        return err

    def guard(self, chunks: Iterable[bytes], primed: Iterable[bytes] = ()) -> Iterator[bytes]:
        """Yield *chunks* unchanged, raising ``rp.StreamError`` when the stream fails.

        The error is raised *in place of* the failing event: the bytes before its
        frame are yielded, the frame itself never is, so a caller's SSE parser (the
        openai SDK's, say) never sees an ``error`` event it would act on first.
        *primed* are chunks already fed to this check (while the adapter looked
        for the first content event): they are yielded first, not judged again,
        and a problem they showed is raised right after them (see :meth:`trimmed`).
        """
        yield from self.trimmed(primed) if self.problem is not None else primed
        previous = b""
        try:
            for chunk in chunks if self.problem is None else ():
                if self.feed(chunk) is not None:
                    if head := self.before_problem(chunk, previous):
                        yield head
                    break
                yield chunk
                previous = chunk
        except Exception as exc:  # noqa: BLE001 - the transport broke: lost() judges it
            self._broken(exc)
        self._ended()

    async def aguard(
        self, chunks: AsyncIterable[bytes], primed: Iterable[bytes] = ()
    ) -> AsyncIterator[bytes]:
        """:meth:`guard` for an async byte stream."""
        for chunk in self.trimmed(primed) if self.problem is not None else primed:
            yield chunk
        previous = b""
        try:
            if self.problem is None:
                async for chunk in chunks:
                    if self.feed(chunk) is not None:
                        if head := self.before_problem(chunk, previous):
                            yield head
                        break
                    yield chunk
                    previous = chunk
        except Exception as exc:  # noqa: BLE001
            self._broken(exc)
        self._ended()

    def before_problem(self, chunk: bytes, previous: bytes = b"") -> bytes:
        """What of *chunk* — the chunk whose :meth:`feed` found the problem — the caller gets.

        The bytes before the failing event's frame (*previous* is the chunk before,
        as a frame boundary may straddle the two). A problem that is no single
        event (an overlong line, an undecodable body) leaves *chunk* whole; an
        encoded (gzip…) chunk cannot be cut, so none of it is handed over.
        """
        data = self._monitor.problem_data
        if data is None or self._ended_by is not None:
            return chunk
        if self._decoder is not None:
            return b""
        return _bytes_before_event(chunk, data, previous)

    def trimmed(self, read: Iterable[bytes]) -> list[bytes]:
        """*read* — chunks fed to this check, the last of which showed its problem —
        as the caller may see them: up to the failing event's frame (:meth:`before_problem`).

        For an adapter that hands over what it read while priming, then raises.
        """
        chunks = list(read)
        if chunks and self.problem is not None:
            previous = chunks[-2] if len(chunks) > 1 else b""
            head = self.before_problem(chunks[-1], previous)
            chunks[-1:] = [head] if head else []
        return chunks

    async def aprime(
        self, chunks: AsyncIterator[bytes]
    ) -> tuple[list[bytes], StreamProblem | None]:
        """Read *chunks* until the stream is committed or fails: (chunks read, problem).

        The chunks read were fed to this check: hand them over with the rest,
        ``aguard(chunks, primed=read)``. A problem means the stream failed
        before it was committed: judge it with :meth:`outcome` (a retry is
        transparent). A transport error ends the priming like :meth:`lost`.
        """
        read: list[bytes] = []
        while not self.committed:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return read, self.close()
            except Exception as exc:  # noqa: BLE001 - any transport error ends the stream
                return read, self.lost(exc)
            read.append(chunk)
            if (problem := self.feed(chunk)) is not None:
                return read, problem
        return read, None

    def _broken(self, exc: Exception) -> None:
        if (problem := self.lost(exc)) is not None:
            raise self.error(problem) from exc

    def _ended(self) -> None:
        if (problem := self.close()) is not None:
            raise self.error(problem) from None
