"""Every command chooses its policy as the library does, and names it so it can be chosen again.

The library reads ``RETRYPOLICY_CONFIG`` (``~`` expanded) and ``RETRYPOLICY_PROFILE``; the
commands read them too, with ``--config`` and ``--profile`` replacing one variable each.
``explain`` suggests a ``simulate`` command "through this policy": run as printed, it must
simulate the policy explained, not EU GPT.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import test_cli

Run = Callable[..., tuple[int, str, str]]

cli = test_cli.cli
"""``cli("explain", "429")``: main() in-process; (exit code, stdout, stderr), with the
RETRYPOLICY_* variables of the environment running the tests cleared."""

POLICY = """\
[policies.batch]
max_attempts = 3
[[policies.batch.rules]]
status = 503
retry = false
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory holding ``policy.toml``, with ``~`` pointing at it."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["explain", "503", "--profile", "batch"], "class:   unavailable (do not retry)"),
        (["dump", "--profile", "batch"], "max_attempts = 3"),
        (["schedule", "--kind", "unavailable", "--profile", "batch"], "not retried"),
    ],
)
def test_a_tilde_in_retrypolicy_config_is_expanded_with_profile(
    cli: Run, home: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    """RETRYPOLICY_CONFIG=~/policy.toml works with --profile as it works without it and in
    the library (docs/configuration.md: "~ is expanded")."""
    monkeypatch.setenv("RETRYPOLICY_CONFIG", "~/policy.toml")
    code, out, err = cli(*args)
    assert code == 0, err
    assert expected in out


def _what_if(out: str) -> list[str]:
    found = re.search(r"what-if: `retrypolicy (simulate [^`]*)`", out)
    assert found is not None, out
    return shlex.split(found.group(1))


@pytest.mark.parametrize(
    "choose",
    [
        pytest.param(lambda home: ["--config", str(home / "policy.toml")], id="--config"),
        pytest.param(
            lambda home: ["--config", str(home / "policy.toml"), "--profile", "batch"],
            id="--config --profile",
        ),
        pytest.param(lambda home: ["--profile", "http"], id="--profile of a built-in"),
    ],
)
def test_explains_what_if_simulates_the_policy_explained(
    cli: Run, home: Path, choose: Callable[[Path], list[str]]
) -> None:
    """The simulate command explain prints, run as printed, simulates the policy explained
    (its name is the one explain prints), not EU GPT."""
    code, out, err = cli("explain", "503", *choose(home))
    assert code == 0, err
    name = re.search(r"^policy:  (\S+)$", out, re.MULTILINE)
    assert name is not None
    simulate = _what_if(out)
    code, out, err = cli(*simulate, "--duration", "2", "--clients", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["policy"] == name.group(1)


def test_simulate_without_policy_uses_the_environments_policy(
    cli: Run, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simulate without --policy simulates the policy RETRYPOLICY_CONFIG names, as every
    command and the library use it; explain's what-if then needs no --policy."""
    monkeypatch.setenv("RETRYPOLICY_CONFIG", "~/policy.toml")
    _, out, _ = cli("explain", "503")
    assert _what_if(out) == ["simulate", "--outage", "30"]
    code, out, err = cli("simulate", "--duration", "2", "--clients", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["policy"] == "batch"


def test_simulate_refuses_a_broken_retrypolicy_config(
    cli: Run, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RETRYPOLICY_CONFIG that cannot be used is an error naming the variable, never a
    silent fall-back to EU GPT (docs/cli.md, "Which policy")."""
    monkeypatch.setenv("RETRYPOLICY_CONFIG", str(home / "missing.toml"))
    code, out, err = cli("simulate", "--duration", "2", "--clients", "1", "--json")
    assert code == 2
    assert out == ""
    assert "RETRYPOLICY_CONFIG" in err


def test_simulate_reads_a_policy_file_in_a_folder_with_a_colon(cli: Run, tmp_path: Path) -> None:
    """--policy DIR:X/FILE.toml[:PROFILE]: the profile is after the last colon, so a path
    with a colon in it still names its file."""
    folder = tmp_path / "a:b"
    folder.mkdir()
    (folder / "policy.toml").write_text(POLICY, encoding="utf-8")
    for spec in (f"{folder}/policy.toml", f"{folder}/policy.toml:batch"):
        code, out, err = cli("simulate", "--policy", spec, "--duration", "2", "--json")
        assert code == 0, err
        assert json.loads(out)["policy"] == "batch"
