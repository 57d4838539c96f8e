"""``rp.testing.reset()`` puts the process back as it started, the openai adapter included."""

from __future__ import annotations

import warnings

import openai

import retrypolicy as rp
from retrypolicy_openai import SDKRetriesWarning, wrap


def _warned_on_wrap() -> bool:
    """Whether wrapping a client that retries by itself shows SDKRetriesWarning now."""
    given = openai.OpenAI(api_key="eugpt_reset", base_url="http://127.0.0.1:1/v1", max_retries=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = wrap(given)
    wrapped.close()
    given.close()
    return any(issubclass(w.category, SDKRetriesWarning) for w in caught)


def test_reset_shows_the_once_per_process_warning_again() -> None:
    """SDKRetriesWarning is shown once per process; after ``rp.testing.reset()`` — a fresh
    process, as far as retrypolicy can make one — it is shown again, so a test that expects
    it does not depend on whether an earlier test of the session wrapped a client."""
    _warned_on_wrap()  # whatever happened before: shown now, or earlier in the process
    assert not _warned_on_wrap()  # once per process
    rp.testing.reset()
    assert _warned_on_wrap()
