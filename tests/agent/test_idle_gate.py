"""The deferred decoder's idle gate (agent/deferred.py), driven by a scripted clock and
CPU counters: it opens when the node has idle CPU, closes to measure again, and yields
to spool pressure."""

from __future__ import annotations

import os
import time

import pytest

from agent import deferred


class Node:
    """A clock and /proc/stat's idle counter that the test moves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.idle = 0
        self.tick = 100
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        monkeypatch.setattr(deferred, "_cpu_jiffies", lambda: (0, self.idle))
        monkeypatch.setattr(os, "sysconf", lambda name: self.tick)

    def wait(self, seconds: float, idle_cpus: float) -> None:
        self.now += seconds
        self.idle += round(seconds * idle_cpus * self.tick)


def test_opens_with_idle_cpu_and_stays_closed_without(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(monkeypatch)
    gate = deferred.IdleGate(min_idle_cpus=0.5, interval=0.1)
    assert not gate.allows()  # the first interval measures
    node.wait(0.1, idle_cpus=0.1)
    assert not gate.allows()
    node.wait(0.1, idle_cpus=0.2)
    assert not gate.allows()
    node.wait(0.1, idle_cpus=1.5)
    assert gate.allows()
    assert gate.paused_s == pytest.approx(0.3)


def test_pressure_decodes_even_when_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(monkeypatch)
    gate = deferred.IdleGate()
    node.wait(0.1, idle_cpus=0.0)
    assert not gate.allows(backlog=10)
    assert gate.allows(backlog=10, pressure=True)


def test_a_growing_backlog_closes_an_open_gate_to_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(monkeypatch)
    gate = deferred.IdleGate(interval=0.1, probe_every=10.0, growth=1000)
    node.wait(0.1, idle_cpus=2.0)
    assert gate.allows(backlog=0)
    node.wait(0.1, idle_cpus=0.0)  # the decoder ran: idle is not measurable now
    assert gate.allows(backlog=500)  # catching up or keeping up: stays open
    node.wait(0.1, idle_cpus=0.0)
    assert not gate.allows(backlog=5000)  # traffic outruns the decoder: look again
    node.wait(0.1, idle_cpus=0.05)  # the decoder paused: the node really is busy
    assert not gate.allows(backlog=9000)
    node.wait(0.1, idle_cpus=1.8)  # the load is over
    assert gate.allows(backlog=9000)


def test_an_open_gate_measures_again_every_probe_period(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(monkeypatch)
    gate = deferred.IdleGate(interval=0.1, probe_every=0.5)
    node.wait(0.1, idle_cpus=2.0)
    assert gate.allows()
    for _ in range(4):
        node.wait(0.1, idle_cpus=0.0)
        assert gate.allows()
    node.wait(0.1, idle_cpus=0.0)
    assert not gate.allows()  # probing
    node.wait(0.1, idle_cpus=1.0)
    assert gate.allows()
