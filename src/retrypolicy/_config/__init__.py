"""Policies as TOML files, and back: :func:`load_policy` and :func:`dump_policy`.

One job per module:

- :mod:`.schema`: every key of the file format, its type, default and meaning
  (what ``docs/configuration.md`` is tested against);
- :mod:`.load`: reading a file: TOML, ``extends``, building the policies, with
  every value checked by the core's own validators;
- :mod:`.dump`: writing a policy as a self-contained file;
- :mod:`.sources`: where each value of a loaded policy was written (for ``explain``);
- :mod:`.literals`: TOML literals, for writing values and showing them in messages.
"""

from __future__ import annotations

from .dump import dump_policy
from .load import ConfigFileError, load_policies, load_policy, load_policy_with_sources
from .schema import SCHEMA, Key
from .sources import PolicySources, explain_sources

__all__ = [
    "SCHEMA",
    "ConfigFileError",
    "Key",
    "PolicySources",
    "dump_policy",
    "explain_sources",
    "load_policies",
    "load_policy",
    "load_policy_with_sources",
]
