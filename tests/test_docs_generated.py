"""The generated parts of the docs (docs/conf.py) cover what they must, and cannot drift.

The command line page and the contract table are produced from the code at build time;
these tests make sure every subcommand has its section and every rule its row.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import attrs
import pytest

import retrypolicy as rp

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markers(page: str) -> list[str]:
    return re.findall(r"<!-- generated: (.+?) -->", (DOCS / page).read_text(encoding="utf-8"))


def test_cli_page_has_the_help_of_every_subcommand(conf: ModuleType) -> None:
    """docs/cli.md shows `--help` of the program and of each subcommand the parser has."""
    wanted = ["retrypolicy --help"] + [f"retrypolicy {c} --help" for c in conf.cli_commands()]
    assert sorted(markers("cli.md")) == sorted(wanted)
    for command in conf.cli_commands():
        assert f"\n## {command}\n" in (DOCS / "cli.md").read_text(encoding="utf-8")


def test_cli_help_is_the_parsers(conf: ModuleType) -> None:
    """The inserted text is what the parser prints, at a fixed width."""
    text = conf.generated("retrypolicy explain --help")
    assert text.startswith("```text\nusage: retrypolicy explain")
    assert text.endswith("\n```")
    assert all(len(line) <= conf.HELP_COLUMNS for line in text.splitlines())


def test_contract_table_has_a_row_per_rule_with_its_advice(conf: ModuleType) -> None:
    """docs/contract.md gets one row per rule of rp.EUGPT, in order, each with its advice."""
    assert markers("contract.md") == ["contract table"]
    rows = [line for line in conf.contract_table().splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(rp.EUGPT.rules)  # the header, then the rules
    for row, rule in zip(rows[1:], rp.EUGPT.rules, strict=True):
        assert f"`{rule.kind}`" in row
        assert rule.advice in row


def test_every_page_expands(conf: ModuleType) -> None:
    """No page names a generated block that does not exist."""
    for page in DOCS.glob("*.md"):
        conf.expand(page.read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="unknown generated block"):
        conf.expand("<!-- generated: nonsense -->")


@pytest.mark.parametrize(
    "cls", [rp.Policy, rp.Rule, rp.Backoff, rp.transport.AdapterOptions, rp.transport.Outcome]
)
def test_attrs_signatures_show_real_defaults(conf: ModuleType, cls: type) -> None:
    """attrs classes render `backoff=Backoff()`, never `attr_dict[...]` or `NOTHING`."""
    assert attrs.has(cls)
    result = conf._attrs_signature(None, "class", cls.__name__, cls, None, "(...)", None)
    assert result is not None
    signature = result[0]
    assert "attr_dict" not in signature
    assert "NOTHING" not in signature
    if cls is rp.Policy:
        assert "backoff=Backoff()" in signature


def test_profiles_get_their_own_docstring(conf: ModuleType) -> None:
    """rp.EUGPT and rp.HTTP are documented by the text after their assignment, not Policy's."""
    for name in ("EUGPT", "HTTP"):
        lines = conf._module_attribute_doc(getattr(rp, name), f"retrypolicy.{name}")
        assert lines
        assert lines[0] != (rp.Policy.__doc__ or "").splitlines()[0]
