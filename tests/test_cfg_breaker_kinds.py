"""A breaker's ``kinds`` in a policy file name kinds the policy's rules give.

The breaker counts an attempt as a failure when its kind is in ``kinds``; a kind no rule
gives is never seen, so a typo (``"unavailble"``) would silently keep the breaker closed
through a whole outage of 503s. The file is refused instead, with the key path, the kinds
the rules give and the likely fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import retrypolicy as rp
from retrypolicy._config import load_policies

# (the file, the problem expected: None when the file is valid)
CASES = [
    pytest.param(
        '[policies.a.breaker]\nkinds = ["unavailble", "timeout"]\n',
        "policies.a.breaker.kinds: expected a failure kind of the policy's rules (",
        id="a typo in an inherited kind",
    ),
    pytest.param(
        '[policies.a.breaker]\nkinds = ["unavailable", "timeout"]\n',
        None,
        id="kinds of the inherited rules",
    ),
    pytest.param(
        '[policies.a.breaker]\nkinds = ["gateway"]\n'
        '[[policies.a.rules]]\nstatus = 504\nkind = "gateway"\nretry = true\n',
        None,
        id="a kind of the policy's own rule",
    ),
    pytest.param(
        '[policies.a]\nextends = "http"\n[policies.a.breaker]\nkinds = ["upstream_timeout"]\n',
        None,
        id="a built-in kind the rules do not give (kept: the built-ins' names are not typos)",
    ),
    pytest.param(
        '[policies.a]\nbreaker = false\n[policies.b]\nextends = "a"\n'
        '[policies.b.breaker]\nkinds = ["gatway"]\n',
        "policies.b.breaker.kinds",
        id="in a policy nobody selects: the whole file is checked",
    ),
]


@pytest.mark.parametrize(("text", "problem"), CASES)
def test_breaker_kinds_must_be_kinds_of_the_policy(
    tmp_path: Path, text: str, problem: str | None
) -> None:
    """Each row: the file loads, or fails with the problem naming the key path."""
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    if problem is None:
        assert load_policies(path)
        return
    with pytest.raises(rp.ConfigError) as caught:
        load_policies(path)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_typo_gets_the_likely_fix(tmp_path: Path) -> None:
    """The problem quotes the value as written and suggests the kind it was meant to be."""
    path = tmp_path / "p.toml"
    path.write_text('[policies.a.breaker]\nkinds = ["unavailble"]\n', encoding="utf-8")
    with pytest.raises(rp.ConfigError) as caught:
        rp.load_policy(path)
    (problem,) = caught.value.problems
    assert 'found "unavailble" (string); did you mean "unavailable"?' in problem
