"""Decorated-call overhead: rp.retry against a bare call, wrapt, tenacity, stamina, backoff.

Run: python bench/bench_decorator.py
Targets (issue 16): success-path overhead at most 1.5x a plain wrapt pass-through and at
least 10x less than tenacity's; fail-twice-then-succeed under rp.testing.instant() at most 8x
a hand-written try/except loop with the budget's accounting on, 7x without.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import backoff
import stamina
import tenacity
import wrapt
from _timing import interleaved, table

import retrypolicy as rp


def bare() -> int:
    return 1


@wrapt.decorator
def _passthrough(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
    return wrapped(*args, **kwargs)


wrapt_plain = _passthrough(bare)
ours = rp.retry(bare)
ten = tenacity.retry(stop=tenacity.stop_after_attempt(3))(bare)
sta = stamina.retry(on=ConnectionError, attempts=3)(bare)
bac = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(bare)


async def abare() -> int:
    return 1


@wrapt.decorator
async def _apassthrough(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
    return await wrapped(*args, **kwargs)


a_wrapt = _apassthrough(abare)
a_ours = rp.retry(abare)
a_ten = tenacity.retry(stop=tenacity.stop_after_attempt(3))(abare)
a_sta = stamina.retry(on=ConnectionError, attempts=3)(abare)
a_bac = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(abare)


def failing_twice() -> object:
    """A function that fails twice with a connection error, then succeeds (state per call)."""
    state = {"n": 0}

    def fn() -> int:
        state["n"] += 1
        if state["n"] % 3:
            raise ConnectionRefusedError
        return 1

    return fn


def hand_loop() -> int:
    """What a careful person writes: try three times, no sleep for a zero wait."""
    fn = HAND
    for attempt in range(3):
        try:
            return fn()  # type: ignore[no-any-return,operator]
        except ConnectionError:
            if attempt == 2:
                raise
    raise AssertionError


def zero_waits():  # type: ignore[no-untyped-def]
    """backoff's wait generator protocol, always zero."""
    while True:
        yield 0


HAND = failing_twice()
# two retries out of three attempts would empty EU GPT's retry budget within a few dozen
# calls (it is there to stop exactly that): a bucket that never runs dry keeps the spend
# and the refund in the measurement, not the give-up
F_OURS = rp.retry(rp.EUGPT.evolve(budget=rp.RetryBudget(capacity=1e15)))(failing_twice())
F_PLAIN = rp.retry(rp.EUGPT.evolve(budget=None))(failing_twice())  # no storm accounting
# the same two with waits of zero by policy, outside instant mode (instant mode is a test
# tool: it records every wait, which a production caller never pays for)
ZERO = rp.Backoff(initial=0, max_delay=0)
F_OURS_Z = rp.retry(rp.EUGPT.evolve(budget=rp.RetryBudget(capacity=1e15), backoff=ZERO))(
    failing_twice()
)
F_PLAIN_Z = rp.retry(rp.EUGPT.evolve(budget=None, backoff=ZERO))(failing_twice())
F_TEN = tenacity.retry(
    stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
)(failing_twice())
F_STA = stamina.retry(on=ConnectionError, attempts=3)(failing_twice())
F_BAC = backoff.on_exception(zero_waits, ConnectionError, max_tries=3, jitter=None)(failing_twice())


def run_async(coro_fn: object, n: int) -> None:
    async def many() -> None:
        for _ in range(n):
            await coro_fn()  # type: ignore[operator]

    asyncio.run(many())


def main() -> None:
    print(f"Python {sys.version.split()[0]}; medians of interleaved rounds\n")
    sync = interleaved(
        {
            "bare call": bare,
            "wrapt pass-through": wrapt_plain,
            "retrypolicy @retry": ours,
            "backoff": bac,
            "tenacity": ten,
            "stamina": sta,
        },
        number=20_000,
    )
    print("success path, sync")
    print(table(sync, baseline="wrapt pass-through"))
    ours_over = sync["retrypolicy @retry"] - sync["bare call"]
    ten_over = sync["tenacity"] - sync["bare call"]
    print(
        f"\noverhead: ours {ours_over:.0f} ns, tenacity {ten_over:.0f} ns "
        f"({ten_over / ours_over:.1f}x ours); ours / wrapt = "
        f"{sync['retrypolicy @retry'] / sync['wrapt pass-through']:.2f}\n"
    )

    def loop_of(fn: object) -> object:
        return lambda: run_async(fn, 200)

    asy = interleaved(
        {
            "bare coroutine": loop_of(abare),
            "wrapt pass-through": loop_of(a_wrapt),
            "retrypolicy @retry": loop_of(a_ours),
            "backoff": loop_of(a_bac),
            "tenacity": loop_of(a_ten),
            "stamina": loop_of(a_sta),
        },
        number=20,
    )
    print("success path, async (per 200 awaited calls inside one event loop)")
    print(table(asy, baseline="wrapt pass-through", unit="ns/200"))

    stamina.set_testing(True, attempts=3)  # stamina's own "no waiting" switch
    with rp.testing.instant():
        fail = interleaved(
            {
                "hand try/except loop": hand_loop,
                "retrypolicy @retry": F_OURS,
                "retrypolicy, no budget": F_PLAIN,
                "backoff": F_BAC,
                "tenacity": F_TEN,
                "stamina": F_STA,
            },
            number=3_000,
        )
    print("\nfail twice, then succeed (zero waits)")
    print(table(fail, baseline="hand try/except loop"))

    zero = interleaved(
        {
            "hand try/except loop": hand_loop,
            "retrypolicy @retry": F_OURS_Z,
            "retrypolicy, no budget": F_PLAIN_Z,
        },
        number=3_000,
    )
    print("\nthe same, waits of zero by policy (Backoff(initial=0)), not in instant mode")
    print(table(zero, baseline="hand try/except loop"))


if __name__ == "__main__":
    # measure the loops, not the log sinks
    rp.instrumentation.set_hooks([])
    stamina.instrumentation.set_on_retry_hooks([])
    main()
