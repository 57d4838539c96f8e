"""The storm verdict, composed into the policy's decision: one pure function.

``Policy.decide`` says what the contract allows (retry this 503 after 1.2 s);
storm protection may still say no — the host's breaker is open past the wait,
429s are persistent, the retry budget cannot pay. What the budget, limiter and
breaker know is data by the time it reaches here (:class:`StormVerdict`, read
from a store by the shell), so "retry or give up, and why" is answered in one
place and table-tested like ``decide``.
"""

from __future__ import annotations

from typing import Final

import attrs

from ._budget import BudgetResult
from ._outcome import AttemptState, Decision

__all__ = ["NO_OBJECTION", "StormVerdict", "paid", "storm_decision"]


@attrs.frozen
class StormVerdict:
    """What storm protection said about one failure the policy would retry.

    ``refused``: why the breaker or the limiter refuses the retry ("" when
    neither does). ``budget``: the budget's answer to paying for it (None
    without a budget, or when it was not asked because something else refused).
    ``cost``: what the retry cost (or would have cost) in tokens.
    """

    refused: str = ""
    budget: BudgetResult | None = None
    cost: float = 0.0

    @property
    def paid(self) -> bool:
        """True when a budget was asked and paid for the retry."""
        return self.budget is not None and self.budget.ok


NO_OBJECTION: Final = StormVerdict()
"""The verdict of a policy without storm protection."""

_PAID: dict[float, StormVerdict] = {}


def paid(cost: float) -> StormVerdict:
    """The verdict on a retry the budget paid *cost* for: the common answer, built once
    per cost."""
    verdict = _PAID.get(cost)
    if verdict is None:
        verdict = _PAID[cost] = StormVerdict("", BudgetResult(True, 0.0, 0.0), cost)
    return verdict


def storm_decision(decision: Decision, verdict: StormVerdict, state: AttemptState) -> Decision:
    """*decision* as storm protection lets it stand: a retry goes ahead only when nothing
    refused it and the budget (if any) paid for it; otherwise give up now, saying why —
    the failure keeps its kind. *state* is where the call stood before this failure (a
    refused retry does not count as one)."""
    if decision.action != "retry":
        return decision
    why = verdict.refused
    budget = verdict.budget
    if not why:
        if budget is None or budget.ok:
            return decision
        kind = decision.classification.kind
        why = (
            f"{kind}: retry budget exhausted ({budget.level:.4g} of {budget.capacity:g} tokens "
            f"left; a retry costs {verdict.cost:g})"
        )
    return Decision(
        "give_up", decision.classification, why, state, retry_after=decision.retry_after
    )
