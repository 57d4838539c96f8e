"""Simulating a policy: a fleet of clients against a scenario, on a virtual clock.

Modules, one job each: ``_scenario`` (what the service does, as data), ``_trace``
(trace files into a scenario), ``_service`` (the service answering attempts),
``_fleet`` (storm protection around the real steps), ``_engine`` (the event loop),
``_report`` (the result, its JSON and its table), ``_plot`` (the optional chart),
``_api`` (:func:`simulate`); the command ``retrypolicy simulate`` is in ``retrypolicy._cli``.
"""

from __future__ import annotations

from ._api import simulate
from ._report import Simulation
from ._scenario import Scenario

__all__ = ["Scenario", "Simulation", "simulate"]
