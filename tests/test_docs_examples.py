"""Every code block of README.md and docs/*.md runs as written.

One test per page. A page's blocks run in order, as a reader would paste them:

- ``python`` / ``pycon``: executed in one namespace per page; a block that starts with
  ``>>>`` is a doctest (its output is compared), any other block is executed whole.
  A block that needs a name the page does not define fails here, as it would for a reader.
- ``toml``: saved in the working directory when its first line names a file
  (``# policy.toml``), as the reader is told to; then loaded as a policy file by
  ``rp.load_policy`` (a table with ``[tool.retrypolicy`` as ``pyproject.toml``), or as a
  fake-server script by ``load_script`` when it holds ``[[replies]]``; ``json``: loaded
  as a script.
- ``sh`` / ``console``: not executed (they install things), but every ``retrypolicy``
  command in them must parse with the real command line parser, and every extra named in
  ``pip install '...[extra]'`` must exist.
- ``text``: output shown to the reader, not code. The error report on the configuration
  page is checked against a real load of a file with the same mistakes.

Any other fence language fails, so a new kind of block is never silently skipped.
The pages start the fake server themselves (``FakeEUGPT``). Afterwards, what ending the
reader's program would do: clients left open in the page's namespace are closed and
servers stopped.
"""

from __future__ import annotations

import asyncio
import doctest
import itertools
import re
import shlex
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import structlog
import urllib3

import retrypolicy as rp
from retrypolicy._cli import _build_parser
from retrypolicy._config import load_policies
from retrypolicy.testing import FakeEUGPT
from retrypolicy.testing._replies import load_script

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))]

# ```lang ... ``` at the start of a line; MyST directives (```{toctree}) are not code.
_FENCE = re.compile(r"^```([A-Za-z]*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_PYTHON = {"python", "pycon"}
_SHELL = {"sh", "console", "bash", "shell"}
_DATA = {"toml", "json"}
_OUTPUT = {"text"}
_EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "optional-dependencies"
]
_FILE_NAME = re.compile(r"# ([\w.-]+\.toml)\n")
_REDIRECT = ("<", ">", "2>")
_SLOW_PAGE = 10.0  # seconds: an example that waits for real is a bug in the page


def code_blocks(page: str) -> list[tuple[str, str, int]]:
    """The page's fenced code blocks: (language, code, line number of the fence)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
        if text[m.start() + 3 : m.start() + 4] != "{"
    ]


@pytest.fixture
def default_events() -> Iterator[None]:
    """The hooks a reader's fresh process has (stdlib logging, since structlog is unconfigured).

    Events must never reach standard output: a doctest would see them in its output.
    """
    hooks = rp.instrumentation.get_hooks()
    configured, config = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    rp.instrumentation.set_hooks([rp.instrumentation.DefaultHook()])
    try:
        yield
    finally:
        rp.instrumentation.set_hooks(hooks)
        structlog.reset_defaults()
        if configured:
            structlog.configure(**config)


def run_python(code: str, page: str, line: int, namespace: dict[str, object]) -> None:
    """Run one block; errors point at the page's own line numbers."""
    where = f"{page}:{line}"
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, namespace, where, page, line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        failures: list[str] = []
        runner.run(test, out=failures.append, clear_globs=False)
        namespace.update(test.globs)  # a DocTest runs in a copy of the namespace
        assert not runner.failures, "".join(failures)
    else:
        exec(compile("\n" * line + code, page, "exec"), namespace)  # noqa: S102 - the docs' own code


def check_toml(code: str, where: str, tmp: Path) -> None:
    if named := _FILE_NAME.match(code):  # "# policy.toml": the reader saves it under that name
        Path(named.group(1)).write_text(code, encoding="utf-8")
    if "[[replies]]" in code:
        file = tmp / "script.toml"
        file.write_text(code, encoding="utf-8")
        assert load_script(file), f"{where}: a script without replies"
        return
    file = tmp / ("pyproject.toml" if "[tool.retrypolicy" in code else "policy.toml")
    file.write_text(code, encoding="utf-8")
    for profile in load_policies(file):  # every policy of the file is checked
        assert isinstance(rp.load_policy(file, profile=profile), rp.Policy), where


def check_json(code: str, where: str, tmp: Path) -> None:
    file = tmp / "script.json"
    file.write_text(code, encoding="utf-8")
    assert load_script(file), f"{where}: a script without replies"


def check_shell(code: str, where: str) -> None:
    parser = _build_parser()
    for line in code.splitlines():
        for command in re.split(r"&&|\|", line.strip().removeprefix("$ ")):
            words = shlex.split(command, comments=True)
            if words and Path(words[0]).name == "retrypolicy":
                args = list(itertools.takewhile(lambda w: not w.startswith(_REDIRECT), words))
                try:
                    parser.parse_args(args[1:])
                except SystemExit as exc:  # argparse's way of saying "bad usage"
                    pytest.fail(f"{where}: {command.strip()!r} does not parse ({exc})")
            for extra in re.findall(r"\[([a-z0-9,]+)\]", command if "install" in words else ""):
                for name in extra.split(","):
                    assert name in _EXTRAS, f"{where}: no extra {name!r} in pyproject.toml"


def close_everything(namespace: dict[str, object]) -> None:
    """What ending the reader's program does: clients closed, servers stopped."""
    for value in namespace.values():
        if isinstance(value, requests.Session | requests.Response | httpx.Client | httpx.Response):
            value.close()
        elif isinstance(value, urllib3.PoolManager):
            value.clear()
    for value in namespace.values():
        if isinstance(value, FakeEUGPT):
            value.stop()


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.usefixtures("default_events")
def test_page_examples_run_as_written(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every code block of the page runs (or loads, or parses), top to bottom."""
    monkeypatch.chdir(tmp_path)  # a page that writes a file writes it here
    monkeypatch.delenv("RETRYPOLICY_CONFIG", raising=False)
    monkeypatch.delenv("RETRYPOLICY_PROFILE", raising=False)
    namespace: dict[str, object] = {"__name__": "__main__"}
    started = time.monotonic()
    try:
        for language, code, line in code_blocks(page):
            where = f"{page}:{line}"
            if language in _PYTHON:
                run_python(code, page, line, namespace)
            elif language == "toml":
                check_toml(code, where, tmp_path)
            elif language == "json":
                check_json(code, where, tmp_path)
            elif language in _SHELL:
                check_shell(code, where)
            else:
                assert language in _OUTPUT, f"{where}: a ```{language} block is never checked"
    finally:
        close_everything(namespace)
        asyncio.set_event_loop_policy(None)
    assert time.monotonic() - started < _SLOW_PAGE, f"{page}: an example waits for real"


def test_every_page_is_covered() -> None:
    """README.md and every docs page are run; only pages without code have nothing to run."""
    assert "README.md" in PAGES
    assert "docs/quickstart.md" in PAGES
    executed = sum(
        1 for page in PAGES for language, _, _ in code_blocks(page) if language not in _OUTPUT
    )
    assert executed >= 40


def test_configuration_error_report_is_real(tmp_path: Path) -> None:
    """The error report shown on the configuration page is what loading such a file says."""
    shown = next(c for lang, c, _ in code_blocks("docs/configuration.md") if lang == "text")
    assert "max_atempts" in shown
    file = tmp_path / "retry.toml"
    file.write_text(
        "[policies.batch]\n"
        "max_atempts = 3\n"
        "[policies.batch.backoff]\n"
        'jitter = "sometimes"\n'
        "[[policies.batch.rules]]\n"
        "status = 700\n"
        '[policies.a]\nextends = "b"\n'
        '[policies.b]\nextends = "a"\n',
        encoding="utf-8",
    )
    with pytest.raises(rp.ConfigError) as info:
        rp.load_policy(file, profile="batch")
    assert str(info.value).replace(str(file), "/srv/app/retry.toml") == shown.rstrip("\n")
