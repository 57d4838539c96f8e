"""Who may talk to Redis during an outage: one prober at a time, everyone else stays local.

A dead Redis must cost the fleet one timeout per probe, not one per caller: while
the store is up every step goes to Redis; after a failure it is *down*, and until
the next probe is due every step is answered by the in-process fallback without
touching the network. When the probe is due, exactly one caller takes it (the
others keep answering locally while it runs); its success ends the outage, its
failure schedules the next probe ``retry_every`` seconds after the failure *ended*
(a probe that hung for its whole timeout must not eat into the local window).

Times are the callers' ``now`` (the clock the store's state is kept in); the
duration of a failed round trip is added by the store, which measures it. The gate
does no I/O and holds its lock for a few assignments only, so async callers may use
it from the event loop.
"""

from __future__ import annotations

import threading

__all__ = ["OutageGate"]


class OutageGate:
    """The outage state of one store: up, or down until the next probe.

    :meth:`enter` says how a step goes: ``False`` (Redis is up: an ordinary round
    trip), ``True`` (down, and this caller is the one prober) or ``None`` (down:
    answer locally, no network). The caller then reports :meth:`failed`,
    :meth:`answered` or, when it was interrupted (cancelled, KeyboardInterrupt),
    :meth:`abandoned` — so a probe is never left taken.
    """

    __slots__ = ("_down", "_lock", "_next_probe", "_probing", "retry_every")

    def __init__(self, retry_every: float) -> None:
        self.retry_every = retry_every
        self._lock = threading.Lock()
        self._down = False
        self._probing = False
        self._next_probe = 0.0

    @property
    def down(self) -> bool:
        """True from a failure until a probe succeeds."""
        return self._down

    def enter(self, now: float) -> bool | None:
        """``False``: go to Redis; ``True``: go, as the one prober; ``None``: stay local."""
        if not self._down:  # the healthy path takes no lock
            return False
        with self._lock:
            if not self._down:
                return False
            if self._probing or now < self._next_probe:
                return None
            self._probing = True
            return True

    def failed(self, probe: bool, ended: float) -> bool:
        """A round trip failed at *ended* (callers' clock); True when this starts an outage
        (the one ``store.unavailable``)."""
        with self._lock:
            first = not self._down
            if probe:
                self._probing = False
            if first or probe:
                self._next_probe = ended + self.retry_every
            else:  # a call that left before the outage was known: push the probe, never pull
                self._next_probe = max(self._next_probe, ended + self.retry_every)
            self._down = True
            return first

    def answered(self, probe: bool) -> bool:
        """A round trip succeeded; True when it ends the outage (the one ``store.recovered``).

        Only the probe ends an outage: a call that left before the failure and came
        back afterwards proves nothing about Redis now.
        """
        if not probe:
            return False
        with self._lock:
            self._probing = False
            was_down, self._down = self._down, False
            return was_down

    def abandoned(self, probe: bool) -> None:
        """A round trip was interrupted: nothing learned, but the probe is free again."""
        if probe:
            with self._lock:
                self._probing = False
