"""Sphinx configuration: furo + MyST, like attrs, structlog and stamina.

Two pages are partly generated at build time from the code, so they cannot drift from it:

- ``<!-- generated: retrypolicy [COMMAND] --help -->`` becomes the help text of the real
  command line parser (docs/cli.md);
- ``<!-- generated: contract table -->`` becomes the table of ``rp.EUGPT``'s rules, with
  each rule's advice (docs/contract.md).

Two autodoc fixes: attrs classes show their real defaults (attrs' generated ``__init__``
would otherwise show ``attr_dict['name'].default`` or ``NOTHING``), and a module-level
object documented under its re-exported name (``retrypolicy.EUGPT``) gets the docstring
written after its assignment in the module that defines it, not its class's docstring.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import attrs

project = "retrypolicy"
author = "retrypolicy developers"
copyright = "2026, retrypolicy developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "retrypolicy"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True  # functions show `policy=None`, not a long repr
nitpicky = False
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

HELP_COLUMNS = 88  # the help text is rendered at this width, whatever the terminal

_GENERATED = re.compile(r"<!-- generated: (.+?) -->")
_GENERATED_PAGES = ("cli", "contract")


# --------------------------------------------------------------------------- generators


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public way
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_help(command: str) -> str:
    """The help of ``retrypolicy [SUBCOMMAND] --help``, as the real parser prints it."""
    from retrypolicy._cli import _build_parser  # noqa: PLC0415 - after sys.path is set

    words = command.split()
    if words[:1] != ["retrypolicy"] or words[-1:] != ["--help"] or len(words) > 3:
        raise ValueError(f"expected 'retrypolicy [COMMAND] --help', got {command!r}")
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    try:
        parser = _build_parser()
        if len(words) == 3:
            parser = _subcommands(parser)[words[1]]
        return parser.format_help().rstrip("\n")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def cli_commands() -> list[str]:
    """The subcommands of the real parser, in the order it lists them."""
    from retrypolicy._cli import _build_parser  # noqa: PLC0415 - after sys.path is set

    return list(_subcommands(_build_parser()))


_FAILURES = {
    "connection": "connect failure (the request never left)",
    "timeout": "read timeout, or reset after sending",
    "incomplete_stream": "stream ends with neither `response.completed` nor `error`",
    "stream_error": "stream `error` event without a usable code",
}


def _match(rule: Any) -> str:
    parts = []
    if rule.status is not None:
        codes = [str(c) for c in sorted(rule.status.codes)]
        classes = [f"other {c}xx" for c in sorted(rule.status.classes)]
        parts.append(" / ".join(codes + classes))
    if rule.code is not None:
        parts.append(
            "stream `error` " + ("with any other code" if rule.code == "*" else f"`{rule.code}`")
        )
    if rule.failure is not None:
        parts.append(_FAILURES.get(str(rule.failure), f"`{rule.failure}`"))
    return ", ".join(parts)


def _wait(rule: Any, policy: Any) -> str:
    if not rule.retry or rule.max_retries == 0:
        return "—"
    b = rule.backoff or policy.backoff
    return f"{b.initial:g} s x{b.multiplier:g}, cap {b.max_delay:g} s, {b.jitter} jitter"


def contract_table() -> str:
    """The rules of ``rp.EUGPT`` as a Markdown table, one row per rule, first match first."""
    import retrypolicy as rp  # noqa: PLC0415 - after sys.path is set

    policy = rp.EUGPT
    rows = [
        "| what happened | kind | retried | retries | wait before a retry | advice |",
        "|---|---|---|---|---|---|",
    ]
    for rule in policy.rules:
        cells = [
            _match(rule),
            f"`{rule.kind}`",
            "yes" if rule.retry and rule.max_retries else "no",
            str(rule.max_retries),
            _wait(rule, policy),
            rule.advice,
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    b = policy.backoff
    limits = [f"At most {policy.max_attempts} attempts in all"] if policy.max_attempts else []
    if policy.deadline:
        limits.append(f"at most {policy.deadline:g} s in all")
    summary = (
        "; ".join(limits or ["No overall limit"])
        + f". A server's wait hint (`Retry-After`, `retry-after-ms`) up to {b.max_retry_after:g} s"
        " is honoured and never undercut; a longer one gives up at once."
    )
    return "\n".join(rows) + "\n\n" + summary


def generated(key: str) -> str:
    """The Markdown that replaces ``<!-- generated: KEY -->``."""
    if key == "contract table":
        return contract_table()
    if key.startswith("retrypolicy"):
        return "```text\n" + cli_help(key) + "\n```"
    raise ValueError(f"unknown generated block {key!r}")


def expand(text: str) -> str:
    """*text* with every ``<!-- generated: ... -->`` marker replaced by what it names."""
    return _GENERATED.sub(lambda m: generated(m.group(1)), text)


# --------------------------------------------------------------------------- Sphinx hooks


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    source[0] = expand(source[0])


def _always_outdated(app: Any, env: Any, added: Any, changed: Any, removed: Any) -> list[str]:
    """The generated pages depend on code, not on their source: rebuild them every time."""
    return [name for name in _GENERATED_PAGES if name in env.found_docs]


class _Default:
    """A default as the signature should show it (its repr is the given text)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _attrs_default(field: Any) -> object:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type] # Factory is a class
        factory = default.factory
        name = getattr(factory, "__name__", None)
        return _Default(f"{name}()" if name and not default.takes_self else "<computed>")
    if isinstance(default, frozenset | set):  # sorted: the same page on every build
        items = ", ".join(repr(item) for item in sorted(default))
        return _Default(f"{type(default).__name__}({{{items}}})" if default else repr(default))
    return _Default(repr(default))


def _attrs_signature(  # noqa: PLR0917 - the signature of Sphinx's event
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str | None
) -> tuple[str, str | None] | None:
    """attrs classes: the real defaults instead of attrs' generated ``__init__`` source."""
    if what not in {"class", "exception"} or not attrs.has(obj):
        return None
    parameters = []
    fields = {f.alias: f for f in attrs.fields(obj) if f.init}
    for param in inspect.signature(obj).parameters.values():
        field = fields.get(param.name)
        default = param.default
        if field is not None and field.default is not attrs.NOTHING:
            default = _attrs_default(field)
        parameters.append(param.replace(annotation=inspect.Parameter.empty, default=default))
    return str(inspect.Signature(parameters)), ret


def _module_attribute_doc(obj: object, name: str) -> list[str] | None:
    """The docstring written after ``NAME = ...`` in the module of the package that defines obj."""
    from sphinx.pycode import ModuleAnalyzer  # noqa: PLC0415 - Sphinx is there at build time

    package, _, short = name.rpartition(".")
    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith(package + ".") or getattr(module, short, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001, S112 - a module without source: try the next
            continue
        if ("", short) in docs:
            return list(docs[("", short)])
    return None


def _data_docstring(  # noqa: PLR0917 - the signature of Sphinx's event
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """A re-exported object gets its own docstring, not its class's."""
    if what != "data":
        return
    found = _module_attribute_doc(obj, name)
    if found is not None:
        lines[:] = found


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _source_read)
    app.connect("env-get-outdated", _always_outdated)
    app.connect("autodoc-process-signature", _attrs_signature)
    app.connect("autodoc-process-docstring", _data_docstring)
    return {"parallel_read_safe": True}


def _iter_markers(text: str) -> Iterator[str]:
    """The keys of the generated blocks of a page (for the tests)."""
    yield from (m.group(1) for m in _GENERATED.finditer(text))
