"""The seam's constants: how much adapters read, what does not commit a stream, where the
attempts are written."""

from __future__ import annotations

from typing import Final

__all__ = ["ATTEMPTS_ATTRIBUTE", "MAX_ERROR_BODY", "MAX_PRIME_BYTES", "PREAMBLE_TYPES"]

MAX_ERROR_BODY: Final = 64 * 1024
"""Adapters read at most this much of an error body (decoded) to classify it."""
MAX_PRIME_BYTES: Final = 64 * 1024
"""How far into a stream an adapter reads, looking for content, before handing it over."""
PREAMBLE_TYPES: Final = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    }
)
"""Event types that carry no content: a stream is not committed to the caller by them.
OpenAI's Responses API sends the last two before the first text, so an error after them
is still retried transparently."""
ATTEMPTS_ATTRIBUTE: Final = "retry_attempts"
"""The attribute on a final response (where its type allows one) that says how many attempts
it took; httpx responses carry it in ``extensions["retrypolicy.attempts"]`` instead."""
