"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

from hypothesis import strategies as st

import retrypolicy as rp

statuses = st.one_of(st.integers(min_value=100, max_value=599), st.none())
bodies = st.one_of(st.binary(max_size=2048), st.text(max_size=2048), st.none())
jitters = st.sampled_from(["full", "equal", "decorrelated", "none"])

backoffs = st.builds(
    rp.Backoff,
    initial=st.floats(min_value=0, max_value=10, allow_nan=False),
    multiplier=st.floats(min_value=1, max_value=10, allow_nan=False),
    max_delay=st.floats(min_value=0, max_value=120, allow_nan=False),
    jitter=jitters,
    max_retry_after=st.floats(min_value=0, max_value=600, allow_nan=False),
)

envelopes = st.fixed_dictionaries(
    {},
    optional={
        "detail": st.one_of(st.text(), st.dictionaries(st.text(), st.text()), st.lists(st.text())),
        "error": st.one_of(
            st.text(),
            st.fixed_dictionaries(
                {},
                optional={"type": st.text(), "code": st.text(), "message": st.text()},
            ),
        ),
    },
)
