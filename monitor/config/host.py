"""What the host lets this process use: the CPUs behind `scoring.threads: auto`."""

from __future__ import annotations

import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota of this process' group ("max 100000", or "150000 100000" for 1.5 CPUs)."""


def usable_cpus(cpu_max: Path = CPU_MAX) -> float:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota (a container's CPU limit,
    which neither `os.cpu_count` nor the mask shows)."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return cpus if quota == "max" else min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        return cpus


def auto_scoring_threads(cpus: float) -> int:
    """Scoring threads for the daemon: 2 where 2 CPUs are there, else 1. Two threads scoring chunks side by
    side make about 1.4 × the points per second of one at stride 1 on 2 cores, the loop thread (decoding,
    windows, Kafka) sharing them (docs/performance.md#scoring-threads); more than 2 is not measured, and
    with less than 2 CPUs a second thread only contends."""
    return 2 if cpus >= 2 else 1
