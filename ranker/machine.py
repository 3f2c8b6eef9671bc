"""What a benchmark ran on, read off the machine (never typed): cores, CPU model, memory, load, and the
share of CPU time the host took for other virtual machines (steal) since this module was imported."""

from __future__ import annotations

import os
import platform
import sys
import time

MIN_STEAL_WINDOW = 10.0  # seconds: below this the steal share says little, and is not reported


def _cpu_counters() -> tuple[int, int] | None:
    """``(steal, total)`` jiffies of all CPUs from ``/proc/stat`` (Linux), or ``None``."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            fields = [int(value) for value in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields)) if len(fields) == 8 else None


_START = (time.monotonic(), _cpu_counters())  # a benchmark imports this module when it starts


def steal_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen by the host between two :func:`_cpu_counters` readings."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1])


def describe_machine() -> str:
    """e.g. ``2 CPU cores (Intel Xeon ...), 23.4 GiB RAM, Linux 6.1, load 0.42, CPU steal 3% during the run
    (...)``; the steal share only after :data:`MIN_STEAL_WINDOW` seconds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = _cpu_model()
    memory = _memory_gib()
    parts = [f"{cores} CPU core{'s' * (cores != 1)}" + (f" ({model})" if model else "")]
    if memory:
        parts.append(f"{memory:.1f} GiB RAM")
    parts.append(f"{platform.system()} {platform.release().split('-')[0]}")
    gpu = _gpu()
    if gpu is not None:
        parts.append(gpu)
    if hasattr(os, "getloadavg"):
        parts.append(f"load {os.getloadavg()[0]:.2f}")
    steal = steal_share(_START[1], _cpu_counters())
    if steal is not None and time.monotonic() - _START[0] >= MIN_STEAL_WINDOW:
        parts.append(f"CPU steal {100 * steal:.0f}% during the run (time the host gave other virtual machines)")
    return ", ".join(parts)


def _gpu() -> str | None:
    """``GPU: <name>`` or ``no GPU``, when torch is already imported (this never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None
