"""``--plot FILE.png``: requests/s, successes/s and the budget level over time, per policy.

matplotlib is an optional extra (``retrypolicy[simulate]``): imported only here, only
when a plot is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .._errors import ConfigError
from ._report import Simulation

__all__ = ["EXTRA_MESSAGE", "plot"]

EXTRA_MESSAGE: Final = "--plot needs matplotlib: pip install 'retrypolicy[simulate]'"


def plot(results: Sequence[Simulation], path: str | Path) -> None:
    """Draw *results* (one line per policy) into the image file *path*.

    Raises :class:`ImportError` with :data:`EXTRA_MESSAGE` when matplotlib is missing, and
    :class:`~retrypolicy.ConfigError` when the file cannot be written.
    """
    try:
        import matplotlib as mpl  # noqa: PLC0415 - the optional extra

        mpl.use("Agg")  # files only: never a window, never a display needed
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise ImportError(EXTRA_MESSAGE) from None
    budgets = [r for r in results if r.budget_per_s]
    rows = 3 if budgets else 2
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(8, 2.4 * rows), layout="constrained")
    try:
        first = results[0]
        end = math.ceil(first.duration)
        fig.suptitle(first.scenario, fontsize=9)
        panels = [("requests/s", "requests_per_s"), ("successes/s", "successes_per_s")]
        if budgets:
            panels.append(("budget level (tokens)", "budget_per_s"))
        for ax, (label, field) in zip(axes, panels, strict=True):
            for i, r in enumerate(results):
                # calls start until the run's duration: the second after it is a partial one
                series = getattr(r, field)[:end]
                if series:  # each policy keeps its colour in every panel
                    ax.plot(range(len(series)), series, f"C{i}", label=r.policy, linewidth=1)
            ax.set_ylabel(label, fontsize=8)
            if first.bad_period is not None:
                ax.axvspan(*first.bad_period, color="0.9", zorder=0)
        axes[0].legend(fontsize=8)
        axes[-1].set_xlabel("seconds")
        try:
            fig.savefig(path, dpi=90)
        except OSError as e:
            msg = f"--plot {path}: cannot write it ({e.strerror or e})"
            raise ConfigError(msg) from None
    finally:
        plt.close(fig)
