"""`retrypolicy simulate` simulates what was asked for, and its report never invents a number.

An option that only qualifies another (``--outage-at`` an outage, ``--burst`` a rate limit)
given alone would leave a healthy service and a report of one; an outage placed after calls
stop is met by no call. Both are refused (exit 2). An incident no call began in has no
requests per call: ``amplification_bad`` is None ("-" in the table), not 0.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

import retrypolicy as rp
from retrypolicy._simulate._report import format_table
from tests import test_cli

Run = Callable[..., tuple[int, str, str]]

cli = test_cli.cli
"""``cli("explain", "429")``: main() in-process; (exit code, stdout, stderr), with the
RETRYPOLICY_* variables of the environment running the tests cleared."""


# (the options, what the error names)
REFUSED = [
    (["--outage-at", "5"], "--outage-at: expected together with --outage SECONDS"),
    (["--outage-kind", "connection"], "--outage-kind: expected together with --outage SECONDS"),
    (["--burst", "3"], "--burst: expected together with --rate-limit REQ_PER_S"),
    (["--kind", "timeout"], "--kind: expected together with --error-rate P"),
    (["--outage", "10", "--outage-at", "100"], "--outage-at 100: expected a moment before calls"),
]


@pytest.mark.parametrize(("options", "error"), REFUSED)
def test_an_option_that_would_change_nothing_is_refused(
    cli: Run, options: list[str], error: str
) -> None:
    """Each row would otherwise print the report of a healthy service, as if asked for."""
    code, out, err = cli("simulate", *options, "--duration", "20", "--json")
    assert code == 2
    assert out == ""
    assert error in err


@pytest.mark.parametrize(
    "options",
    [
        ["--outage", "5", "--outage-at", "2", "--outage-kind", "connection"],
        ["--rate-limit", "5", "--burst", "3"],
        ["--error-rate", "0.5", "--kind", "timeout"],
    ],
)
def test_a_qualifying_option_with_its_option_is_used(cli: Run, options: list[str]) -> None:
    """With the option it qualifies, each is taken into the scenario (named in it)."""
    code, out, err = cli("simulate", *options, "--duration", "20", "--json")
    assert code == 0, err
    scenario = json.loads(out)["scenario"]
    assert "healthy" not in scenario
    assert options[-1] in scenario or "burst 3" in scenario


def test_amplification_of_an_incident_no_call_began_in_is_none() -> None:
    """rp.simulate: an incident no call began in (after calls stop) has no requests per call:
    amplification_bad is None, in the JSON as null and in the table as "-"."""
    result = rp.simulate(rp.EUGPT, rp.Scenario.outage(10, at=100), duration=60)
    assert result.bad_calls == 0
    assert result.amplification_bad is None
    assert result.to_dict()["amplification_bad"] is None
    table = io.StringIO()
    format_table([result], table)
    row = next(line for line in table.getvalue().splitlines() if "in the incident" in line)
    assert row.split()[-1] == "-"


def test_amplification_of_an_incident_calls_began_in_is_a_ratio() -> None:
    """A call that began in the incident gives a number: its requests per call."""
    result = rp.simulate(rp.EUGPT, rp.Scenario.outage(10, at=10), duration=60, rate=2)
    assert result.bad_calls > 0
    assert result.amplification_bad == result.bad_requests / result.bad_calls
