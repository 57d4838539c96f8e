"""The policy used when none is given: ``RETRYPOLICY_CONFIG`` if set, else EU GPT."""

from __future__ import annotations

from ._policy import Policy
from ._profiles import EUGPT

__all__ = ["default_policy"]


def default_policy() -> Policy:
    """The policy for a decorator or adapter built without one."""
    return EUGPT
