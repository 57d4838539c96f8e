"""The simulated service: answers each attempt of a simulation as its scenario says.

Stateful where the real thing is: a rate limit is a token bucket that every request
draws from, retries included — so a fleet that retries 429s sees its own retries come
back as more 429s, as a real rate-limited server would answer them. The 429 carries
``Retry-After`` in whole seconds until the next token, as ``FakeEUGPT(rate_limit=...)``
does, so the simulator and the fake server can be compared.
"""

from __future__ import annotations

import math
import random

import attrs

from ._effects import Answer, Effect
from ._scenario import Scenario

__all__ = ["Service"]


class _Bucket:
    """One rate limit's token bucket (the fake server's, on the virtual clock)."""

    __slots__ = ("answers", "burst", "rate", "refilled", "retry_after", "template", "tokens")

    def __init__(self, effect: Effect) -> None:
        self.rate = effect.rate
        self.burst = effect.burst
        self.tokens = effect.burst
        self.refilled = effect.start
        self.retry_after = effect.retry_after
        assert effect.answer is not None  # noqa: S101 - Scenario.rate_limit sets it
        self.template = effect.answer
        self.answers: dict[int, Answer] = {}

    def take(self, now: float) -> Answer | None:
        """A token (None: let the request through), or the 429 that answers it."""
        tokens = self.tokens + (now - self.refilled) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        if not self.retry_after:
            return self.template
        wait = max(1, math.ceil((1.0 - self.tokens) / self.rate - 1e-9))
        answer = self.answers.get(wait)
        if answer is None:
            headers = (("retry-after", str(wait)),)
            answer = self.answers[wait] = attrs.evolve(self.template, headers=headers)
        return answer


class Service:
    """Answers attempts at virtual times (None: a success); draws from its own *rng*."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.rng = rng
        self.effects: list[tuple[float, float, str, Effect, _Bucket | None]] = [
            (e.start, e.end, e.what, e, _Bucket(e) if e.what == "rate_limit" else None)
            for e in scenario.effects
        ]
        lat = scenario.latency
        self.median = lat.median
        self.sigma = lat.sigma
        self.mu = math.log(lat.median) if lat.median > 0 else 0.0
        self.fail_fast = lat.fail_fast

    def answer(self, now: float) -> Answer | None:
        """What the service answers a request sent at *now*."""
        for start, end, what, effect, bucket in self.effects:
            if not start <= now < end:
                continue
            if what == "outage":
                return effect.answer
            if what == "errors":
                if self.rng.random() < effect.rate:
                    return effect.answer
            elif bucket is not None:  # a rate limit
                found = bucket.take(now)
                if found is not None:
                    return found
            else:
                recorded = effect.bins[int(now - start)]
                if recorded:
                    picked = recorded[int(self.rng.random() * len(recorded))]
                    if picked is not None:
                        return picked
        return None

    def latency(self, answer: Answer | None) -> float:
        """How long *answer* takes to arrive."""
        if answer is None or answer.paid:
            full = self.rng.lognormvariate(self.mu, self.sigma) if self.sigma else self.median
            if answer is not None and answer.midway:
                return full * self.rng.random()
            return full
        return self.fail_fast
