"""The engine's values keep attrs' contract although their __init__ is written by hand."""

from __future__ import annotations

import inspect

import attrs
import pytest

import retrypolicy as rp
from retrypolicy.transport import AttemptState, Decision, Outcome


@pytest.mark.parametrize("cls", [Outcome, AttemptState, Decision])
def test_init_takes_exactly_the_fields(cls: type) -> None:
    """Each hand-written __init__ has the attrs fields' names, order, defaults and kind
    (keyword-only or not): evolve() and every caller rely on it."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = attrs.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        expected_default = inspect.Parameter.empty if f.default is attrs.NOTHING else f.default
        assert p.default == expected_default, f.name
        keyword_only = p.kind is inspect.Parameter.KEYWORD_ONLY
        assert keyword_only is f.kw_only, f.name


def test_values_stay_frozen_and_comparable() -> None:
    """Frozen, equal by value, and changed only through evolve."""
    a = Outcome(status=503, code="x")
    assert a == Outcome(status=503, code="x")
    assert attrs.evolve(a, status=500).status == 500
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.status = 500  # type: ignore[misc]
    s = AttemptState(started=1.0)
    assert s.after_retry("unavailable", 0.5) == AttemptState(1.0, 2, (("unavailable", 1),), 0.5)
    d = Decision("retry", rp.EUGPT.classify(503), "r", s, 0.5)
    assert d.retry
    assert attrs.evolve(d, action="give_up").retry is False
