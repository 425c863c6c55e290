"""Side-by-side benchmarks of pyroplug against stock Pyro4 4.82, and the timing helpers they share.

A benchmark module exposes ``run(quick: bool = False) -> list[Result]`` and is listed in
:data:`benchmarks.__main__.BENCHMARKS`; ``python -m benchmarks`` (``make bench``) runs them all and
prints one summary table. Timing is plain :func:`time.perf_counter` over interleaved rounds (ours,
theirs, ours, theirs, ...) so that drift in machine load hits both sides alike; the reported rate is
the median over the rounds.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Result", "calibrate", "compare", "measure"]


@dataclass(frozen=True)
class Result:
    """One measured case: pyroplug's rate, Pyro4's rate (None when there is nothing to compare)."""

    benchmark: str
    case: str
    ours: float
    theirs: float | None = None
    #: the ratio ours/theirs this case must reach (None: informative only)
    target: float | None = None
    unit: str = "ops/s"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """pyroplug's rate divided by Pyro4's."""
        if not self.theirs:
            return None
        return self.ours / self.theirs

    @property
    def verdict(self) -> str:
        """``PASS`` or ``MISS`` against the target, empty when there is no target."""
        ratio = self.ratio
        if self.target is None or ratio is None:
            return ""
        return "PASS" if ratio >= self.target else "MISS"


def calibrate(func: Callable[[], object], round_time: float) -> int:
    """How many calls of ``func`` take about ``round_time`` seconds."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= round_time / 10:
            return max(1, int(n * round_time / elapsed))
        n *= 4


def _timed(func: Callable[[], object], n: int) -> float:
    loop = range(n)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in loop:
            func()
        return n / (time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()


def measure(func: Callable[[], object], rounds: int = 5, round_time: float = 0.25) -> float:
    """Median calls per second of ``func`` over ``rounds`` rounds of about ``round_time`` seconds."""
    n = calibrate(func, round_time)
    return statistics.median(_timed(func, n) for _ in range(rounds))


def compare(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    rounds: int = 5,
    round_time: float = 0.25,
) -> tuple[float, float]:
    """Median calls per second of ``ours`` and ``theirs``, measured in interleaved rounds."""
    n_ours = calibrate(ours, round_time)
    n_theirs = calibrate(theirs, round_time)
    rates_ours: list[float] = []
    rates_theirs: list[float] = []
    for i in range(rounds):
        if i % 2:  # alternate who goes first, too
            rates_theirs.append(_timed(theirs, n_theirs))
            rates_ours.append(_timed(ours, n_ours))
        else:
            rates_ours.append(_timed(ours, n_ours))
            rates_theirs.append(_timed(theirs, n_theirs))
    return statistics.median(rates_ours), statistics.median(rates_theirs)
