"""The docs' examples run as written: each page's ``python`` blocks, in order, in one namespace.

Pages listed here are executed whole; a block that needs something the page does not
define fails here, as it would for a reader who copies it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import retrypolicy as rp

DOCS = Path(__file__).resolve().parent.parent / "docs"
RUNNABLE = ["transport.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(page: str) -> list[str]:
    return _BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_examples_run_as_written(page: str) -> None:
    """Every python block of the page runs, top to bottom, as a reader would paste it."""
    found = blocks(page)
    assert found, f"{page} has no python block"
    namespace: dict[str, object] = {"__name__": f"docs.{page}"}
    previous = rp.instrumentation.get_hooks()
    rp.instrumentation.set_hooks([])
    try:
        for i, code in enumerate(found):
            exec(compile(code, f"{page}[block {i}]", "exec"), namespace)  # noqa: S102 - the docs' own code
    finally:
        rp.instrumentation.set_hooks(previous)
