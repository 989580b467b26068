"""The load of other processes while one side is measured, to find and repeat noisy turns.

A turn is one side timing every mode at one point in one round. Other processes' CPU use over
the turn = the machine's busy CPU time (/proc/stat, including steal: time the hypervisor gave
to other guests) minus the worker's own, per second of wall time, in cores. A turn is noisy when
that exceeds NOISY_CORES; the driver then repeats it (see run.py). The 1-minute load average
before and after is kept too, though it moves too slowly to judge a turn of a fraction of a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

NOISY_CORES = 0.25  # other processes' CPU use above which a turn is repeated
RETRIES = 2  # repeats of a noisy turn at most; then the quietest attempt is kept
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_ticks() -> int | None:
    """CPU time used by the whole machine so far (user, nice, system, irq, softirq, steal), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


@dataclass
class Turn:
    """Other processes' CPU use in cores (None without /proc) and the load average before and after."""

    other_cores: float | None
    loadavg: tuple[float, float]

    @property
    def noisy(self) -> bool:
        return self.other_cores is not None and self.other_cores > NOISY_CORES


def measure(run: Callable[[], object], own_ticks: Callable[[], int | None]) -> tuple[object, Turn]:
    """run()'s result and the load of other processes meanwhile; own_ticks() is the CPU time of
    the measured process (Worker.cpu_ticks)."""
    load_before, busy_before, own_before = os.getloadavg()[0], busy_ticks(), own_ticks()
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    busy_after, own_after = busy_ticks(), own_ticks()
    if None in (busy_before, busy_after, own_before, own_after):
        other = None
    else:
        other = max(0.0, ((busy_after - busy_before) - (own_after - own_before)) / TICKS_PER_SECOND / wall)
    return result, Turn(other, (load_before, os.getloadavg()[0]))
