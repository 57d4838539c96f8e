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


def outcome_of(tmp_path: Path, **files: str) -> str:
    """Run pytest on *files* (name without ``.py``: text) in a fresh process; its summary, or
    everything it printed when a test failed."""
    for stem, text in files.items():
        (tmp_path / f"{stem}.py").write_text(text, encoding="utf-8")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp_path)  # noqa: S603 - our interpreter, our suite
    return done.stdout.splitlines()[-1] if done.returncode == 0 else done.stdout + done.stderr


@pytest.mark.parametrize(("change", "check"), ROWS, ids=["instant", "no hooks", "a hook added"])
def test_a_test_leaves_nothing_for_the_next(tmp_path: Path, change: str, check: str) -> None:
    """What a test changed process-wide (instant mode, the hooks) is back as it was for the
    next test, as the plugin promises ("nothing left for the test after it")."""
    assert "2 passed" in outcome_of(tmp_path, test_user=SUITE.format(change=change, check=check))


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
    assert "2 passed" in outcome_of(tmp_path, conftest=CONFTEST, test_user=KEEPS)
