"""The ``retrypolicy`` command line: the application layer, one module per command.

``explain``, ``schedule``, ``dump`` and ``check`` make the policy core visible (what
they print is computed by the core, so they cannot explain a policy differently from
how it acts); ``demo`` and ``serve-fake`` run the fake EU GPT server; ``batch`` runs
JSON Lines batches. This package is the only part of :mod:`retrypolicy` that imports
the adapters or :mod:`retrypolicy.testing` at run time: it sits above every layer.

Like the library, the commands that use a policy take it from ``RETRYPOLICY_CONFIG``
and ``RETRYPOLICY_PROFILE`` when ``--config`` / ``--profile`` are not given, and
never fall back to EU GPT when the file those name cannot be used.
"""

from __future__ import annotations

from ._main import build_parser, main

_build_parser = build_parser  # the name docs/conf.py and tests/test_batch_cli.py import

__all__ = ["build_parser", "main"]
