"""What a benchmark ran on, read off the machine (never typed): cores, CPU model, memory, load."""

from __future__ import annotations

import os
import platform
import sys


def describe_machine() -> str:
    """e.g. ``2 CPU cores (Intel Xeon ...), 23.4 GiB RAM, Linux 6.1, load 0.42``."""
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
