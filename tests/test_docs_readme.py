"""README.md's set-up commands: CI runs exactly them, they work without sudo, and they leave
the checkout clean."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)
BASH = shutil.which("bash")


def sh_blocks() -> list[str]:
    """The README's ```sh blocks, in order."""
    return _SH_BLOCK.findall(README)


def readme_test_command() -> str:
    """The one line of the README's "Run the tests" block."""
    after = README[README.index("Run the tests") :]
    block = _SH_BLOCK.search(after)
    assert block is not None
    lines = block.group(1).strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    """.ci/run holds the README's test command as one of its lines, unchanged."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_test_command() in ci


def fake_bin(folder: Path, name: str) -> None:
    """A stand-in command that appends its name and arguments to calls.log."""
    script = folder / name
    script.write_text(f'#!{BASH}\necho "{name} $*" >> "{folder}/calls.log"\n', encoding="utf-8")
    script.chmod(0o755)


@pytest.mark.skipif(BASH is None, reason="the README's command is a bash line")
@pytest.mark.parametrize(
    ("with_sudo", "expected"),
    [
        (False, ["apt-get update", "apt-get install -y redis-server"]),
        (True, ["sudo apt-get update", "sudo apt-get install -y redis-server"]),
    ],
)
def test_redis_install_needs_no_sudo(tmp_path: Path, with_sudo: bool, expected: list[str]) -> None:
    """Without redis-server, the test command updates apt's lists, then installs it: through
    sudo where there is one, directly (a fresh root container) where there is none."""
    redis_part = readme_test_command().split("; python3 ", 1)[0]
    fake_bin(tmp_path, "apt-get")
    if with_sudo:
        fake_bin(tmp_path, "sudo")  # records "sudo apt-get ...", so apt-get is not run
    result = subprocess.run(  # noqa: S603 - the README's own line, against stand-in commands
        [str(BASH), "-c", redis_part],
        env={"PATH": str(tmp_path)},  # no redis-server, no sudo unless faked
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == expected


def written_files() -> set[str]:
    """The files the README's commands write in the checkout: `> F`, `--ledger F`, `--out F`."""
    found: set[str] = set()
    for block in sh_blocks():
        found.update(re.findall(r"(?:>|--ledger|--out)\s+([\w./-]+\.\w+)", block))
    return {f for f in found if "://" not in f and not f.startswith("/dev/")}


def test_readme_commands_leave_the_checkout_clean() -> None:
    """Every file the README's commands write in the checkout is ignored by .gitignore
    (root-anchored); the rest go outside it (an absolute path such as /tmp/jobs.db)."""
    files = {f for f in written_files() if not f.startswith("/")}
    assert "policy.toml" in files
    patterns = [
        line.strip().lstrip("/")
        for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for file in files:
        assert any(fnmatch.fnmatch(file, p) for p in patterns), f"{file} is not in .gitignore"
    for journal in ("jobs.db-wal", "jobs.db-shm"):  # SQLite's files beside the ledger
        assert any(fnmatch.fnmatch(journal, p) for p in patterns)
