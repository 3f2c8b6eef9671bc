"""What a benchmark reports about the machine it ran on."""

from __future__ import annotations

import time

from ranker import machine


def test_steal_share_is_the_stolen_part_of_the_cpu_time_between_two_readings():
    assert machine.steal_share((100, 1_000), (130, 1_200)) == 0.15
    assert machine.steal_share((100, 1_000), (100, 1_000)) is None  # no time passed
    assert machine.steal_share(None, (1, 2)) is None                # no /proc/stat


def test_the_steal_share_is_reported_only_over_a_window_long_enough(monkeypatch):
    monkeypatch.setattr(machine, "_cpu_counters", lambda: (130, 1_200))
    monkeypatch.setattr(machine, "_START", (time.monotonic(), (100, 1_000)))
    assert "steal" not in machine.describe_machine()
    monkeypatch.setattr(machine, "_START", (time.monotonic() - machine.MIN_STEAL_WINDOW, (100, 1_000)))
    assert machine.describe_machine().endswith(
        ", CPU steal 15% during the run (time the host gave other virtual machines)")
