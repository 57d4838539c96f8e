"""The pytest plugin we ship isolates storm state per test, in a real pytest run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SUITE = """
import retrypolicy as rp

pytest_plugins = ["retrypolicy.testing.pytest_plugin"]


SMALL = rp.EUGPT.evolve(name="small", budget=rp.RetryBudget(capacity=20, refill_rate=0))


def down():
    raise ConnectionRefusedError("down")


def test_a_drains_the_budget(rp_instant):
    retried = rp.retry(SMALL)(down)
    for _ in range(10):
        try:
            retried()
        except ConnectionRefusedError:
            pass
    assert SMALL.stats().budget_exhausted


def test_b_finds_it_full():
    stats = SMALL.stats()
    assert stats.budget_level == stats.budget_capacity
    assert stats.counters["retries_refused"] == 0
"""


def test_each_test_starts_with_a_full_budget(tmp_path: Path) -> None:
    """In a user's suite with the plugin, a test that drains the budget leaves it full for
    the next one (run by pytest itself, in the order written)."""
    (tmp_path / "test_user.py").write_text(SUITE, encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - our own interpreter, a suite we wrote
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
