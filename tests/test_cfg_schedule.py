"""`retrypolicy schedule` and `retrypolicy explain` agree on every outcome.

A kind may have several rules: a rule of the file that is not retried, placed before an
inherited rule of the same kind that is. Only the first rule that matches an outcome decides
it, so each schedule must say which outcomes it is for, and a rule of the kind that is not
retried must say so rather than be hidden behind the retried one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import test_cli

Run = Callable[..., tuple[int, str, str]]

cli = test_cli.cli
"""``cli("explain", "429")``: main() in-process; (exit code, stdout, stderr), with the
RETRYPOLICY_* variables of the environment running the tests cleared."""


def _file(tmp_path: Path, rules: str, head: str = "") -> str:
    path = tmp_path / "policy.toml"
    path.write_text(f"[policies.batch]\n{head}\n{rules}", encoding="utf-8")
    return str(path)


def _blocks(out: str) -> list[tuple[str, str]]:
    """Each printed rule as (heading, its ``for:`` line)."""
    lines = out.splitlines()
    return [
        (line, lines[i + 1].removeprefix("  for: "))
        for i, line in enumerate(lines)
        if " / " in line and not line.startswith(" ")
    ]


# (the file's rules, --kind, the rules printed: (heading start, for), explain STATUS, its class)
CASES = [
    pytest.param(
        "[[policies.batch.rules]]\nstatus = 503\nretry = false\n",
        "unavailable",
        [
            ("batch / unavailable: not retried", "HTTP 503"),
            ("batch / unavailable: 5", "HTTP 502, 504"),
        ],
        ("503", "class:   unavailable (do not retry)"),
        id="a new 503 rule not retried, the inherited 502-504 rule retried",
    ),
    pytest.param(
        "[[policies.batch.rules]]\nstatus = 500\nretry = false\n",
        "server_error",
        [
            ("batch / server_error: not retried", "HTTP 500"),
            ("batch / server_error: 2", "HTTP 501, 505-599"),
        ],
        ("500", "class:   server_error (do not retry)"),
        id="500 not retried, the inherited 5xx catch-all retried for the rest",
    ),
    pytest.param(
        '[[policies.batch.rules]]\nstatus = 504\nkind = "gateway"\nmax_retries = 1\n',
        "unavailable",
        [("batch / unavailable: 5", "HTTP 502, 503")],
        ("504", "class:   gateway (retry up to 1 time)"),
        id="a status taken by a rule of another kind is not listed under the old kind",
    ),
]


@pytest.mark.parametrize(("rules", "kind", "printed", "explained"), CASES)
def test_schedule_of_a_kind_names_each_rules_outcomes(
    cli: Run,
    tmp_path: Path,
    rules: str,
    kind: str,
    printed: list[tuple[str, str]],
    explained: tuple[str, str],
) -> None:
    """schedule --kind K prints every rule of K that decides an outcome, each with the
    outcomes it decides, the ones not retried as such; explain agrees for the status."""
    config = _file(tmp_path, rules)
    code, out, err = cli("schedule", "--kind", kind, "--samples", "5", "--config", config)
    assert code == 0, err
    blocks = _blocks(out)
    assert len(blocks) == len(printed), out
    for (heading, covers), (start, expected) in zip(blocks, printed, strict=True):
        assert heading.startswith(start), out
        assert covers == expected, out
    status, klass = explained
    assert klass in cli("explain", status, "--config", config)[1]


def test_schedule_of_every_kind_shows_a_rule_not_retried_beside_its_retried_kind(
    cli: Run, tmp_path: Path
) -> None:
    """Without --kind, a retried kind's rule that is not retried is listed too, and a
    kind that is never retried (invalid_request) is not."""
    config = _file(tmp_path, "[[policies.batch.rules]]\nstatus = 503\nretry = false\n")
    code, out, _ = cli("schedule", "--samples", "5", "--config", config)
    assert code == 0
    blocks = _blocks(out)
    assert ("batch / unavailable: not retried", "HTTP 503") in blocks
    assert not any("invalid_request" in heading for heading, _ in blocks)


def test_schedule_of_a_kind_that_is_never_retried_says_so(cli: Run) -> None:
    """--kind of a kind the policy has but never retries prints that it is not retried
    (explain 400 says "do not retry"), rather than calling the kind unknown."""
    code, out, _ = cli("schedule", "--kind", "invalid_request")
    assert code == 0
    assert _blocks(out) == [("eugpt / invalid_request: not retried", "HTTP 400")]


def test_schedule_says_when_max_attempts_allows_fewer_retries(cli: Run, tmp_path: Path) -> None:
    """A rule of 5 retries under max_attempts = 1 gets none: schedule says why, and
    explain says so on its class line instead of promising 5 retries."""
    config = _file(tmp_path, "", head="max_attempts = 1")
    code, out, _ = cli("schedule", "--kind", "unavailable", "--samples", "5", "--config", config)
    assert code == 0
    assert out.startswith("batch / unavailable: 0 retries (max_attempts = 1), full jitter")
    assert "retry     min" not in out
    explained = cli("explain", "503", "--config", config)[1]
    assert "class:   unavailable (retry up to 5 times; max_attempts = 1 allows 0)" in explained


def test_schedule_says_one_retry_not_one_retries(cli: Run) -> None:
    """internal_error is retried once: "1 retry", as explain says "1 time"."""
    _, out, _ = cli("schedule", "--kind", "internal_error", "--samples", "5")
    assert out.startswith("eugpt / internal_error: 1 retry, full jitter")
