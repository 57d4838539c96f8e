"""`batch requeue --kind` takes the kinds a ledger's jobs failed with, a policy's own
labels included (a TOML rule may name its kind: `kind = "quota_exhausted"`); it used to
refuse every kind but the built-in ones, so such failures could only be requeued by id.
A kind neither built in nor held by the ledger is still refused (a typo), naming both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrypolicy._cli import main
from retrypolicy.batch import FailureInfo, JobState, SQLiteLedger


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """A ledger with one job failed with a policy's own kind, one with a built-in kind."""
    path = tmp_path / "jobs.db"
    with SQLiteLedger(path) as ledger:
        for job_id, kind in (("a", "quota_exhausted"), ("b", "not_found")):
            assert ledger.claim(job_id)[0]
            assert ledger.fail(job_id, FailureInfo(kind=kind, retryable=False))
    return path


REQUEUE = [
    # --kind values, exit code, jobs pending afterwards, text expected in the output
    (["quota_exhausted"], 0, {"a"}, "1 failed job of kind quota_exhausted put back"),
    (["not_found"], 0, {"b"}, "1 failed job of kind not_found put back"),
    (["quota_exhausted", "not_found"], 0, {"a", "b"}, "2 failed jobs of kind"),
    (["timeout"], 0, set(), "0 failed jobs of kind timeout put back"),  # built in, none held
    (["quota_exhausted_"], 2, set(), "--kind quota_exhausted_: expected a failure kind"),
    (["nonsense"], 2, set(), "quota_exhausted"),  # the message lists the ledger's kinds too
]


@pytest.mark.parametrize(("kinds", "code", "pending", "said"), REQUEUE)
def test_requeue_takes_the_kinds_the_ledger_holds(
    ledger_path: Path,
    capsys: pytest.CaptureFixture[str],
    kinds: list[str],
    code: int,
    pending: set[str],
    said: str,
) -> None:
    """A policy's own kind held by the ledger is requeued like a built-in one; an unknown
    kind is refused (exit 2) and nothing changes."""
    argv = ["batch", "requeue", "--ledger", str(ledger_path)]
    for kind in kinds:
        argv += ["--kind", kind]
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert said in out + err
    with SQLiteLedger(ledger_path) as ledger:
        assert {r.job_id for r in ledger.records(JobState.PENDING)} == pending
