"""The pytest plugin undoes what a user's test changed process-wide: hooks and instant mode.

Each suite below runs in a real pytest process, in the order written: the first test
changes something process-wide and never puts it back, the next ones must not see it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SUITE = """
import retrypolicy as rp
from retrypolicy.instrumentation import get_hooks, set_hooks

pytest_plugins = ["retrypolicy.testing.pytest_plugin"]

FROM_CONFTEST = []


def test_a_changes_it():
    {change}


def test_b_sees_the_process_as_it_was():
    {check}
"""

ROWS = [
    # (what a test changes and leaves, what the next test must find)
    (
        "rp.testing.set_instant(True)",
        "from retrypolicy._clock import _instant; assert _instant[0] is None",
    ),
    (
        "set_hooks([])",
        "assert [type(h).__name__ for h in get_hooks()] == ['DefaultHook'], get_hooks()",
    ),
    (
        "set_hooks([*get_hooks(), FROM_CONFTEST.append])",
        "assert FROM_CONFTEST.append not in get_hooks()",
    ),
]


@pytest.mark.parametrize(("change", "check"), ROWS, ids=["instant", "no hooks", "a hook added"])
def test_a_test_leaves_nothing_for_the_next(tmp_path: Path, change: str, check: str) -> None:
    """What a test changed process-wide (instant mode, the hooks) is back as it was for the
    next test, as the plugin promises ("nothing left for the test after it")."""
    (tmp_path / "test_user.py").write_text(
        SUITE.format(change=change, check=check), encoding="utf-8"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, a suite we wrote
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


CONFTEST = """
from retrypolicy.instrumentation import get_hooks, set_hooks

pytest_plugins = ["retrypolicy.testing.pytest_plugin"]

SEEN = []
set_hooks([*get_hooks(), SEEN.append])
"""

KEEPS = """
from conftest import SEEN
from retrypolicy.instrumentation import get_hooks, set_hooks


def test_a_replaces_the_hooks():
    set_hooks([])


def test_b_still_has_the_conftest_hook():
    assert SEEN.append in get_hooks()
"""


def test_hooks_a_conftest_installed_stay(tmp_path: Path) -> None:
    """A hook the user's conftest.py installed is in place for every test, even after a test
    replaced the hooks."""
    (tmp_path / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tmp_path / "test_user.py").write_text(KEEPS, encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - as above
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
