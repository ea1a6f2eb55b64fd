"""A command stops on SIGINT/SIGTERM whatever its main thread is doing (nodetap/signals.py).

A handler calling Event.set() deadlocks when the signal lands while the main thread holds
the event's lock inside Event.wait(): CI once saw a capture ignore SIGTERM for 30 s. The
child below waits on its event in a tight loop while signals rain on it, which hit that
window within a second or two with the plain handler (it hung, or died of a
RecursionError as the next signals re-entered the blocked handler)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import signal, sys, threading, time
from nodetap.signals import stop_on_signals

woken, stop = threading.Event(), threading.Event()
stop_on_signals(woken, (signal.SIGUSR1,))
stop_on_signals(stop, (signal.SIGTERM,))
print("ready", flush=True)
n = 0
while not stop.is_set():
    woken.wait(0.0002)  # the main thread inside Event.wait() nearly all the time
    if woken.is_set():
        woken.clear()
        n += 1
print(n, flush=True)
"""


def test_signals_raining_on_event_wait_never_hang_the_main_thread() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 4
        sent = 0
        while sent < 4000 and time.monotonic() < deadline and child.poll() is None:
            os.kill(child.pid, signal.SIGUSR1)
            sent += 1
            time.sleep(0.0005)
        assert child.poll() is None, "the child died under the signals"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    assert int(out) > 0  # the signals did wake the loop


FORKED = """
import os, signal, threading
from nodetap.signals import stop_on_signals

stop = threading.Event()
stop_on_signals(stop)
pid = os.fork()
if pid == 0:  # a forked worker inherits the handler: its SIGTERM is its own business
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(0)
os.waitpid(pid, 0)
print(stop.wait(1.0), flush=True)
os.kill(os.getpid(), signal.SIGTERM)
print(stop.wait(10.0), flush=True)
"""


def test_a_forked_childs_signal_does_not_stop_the_parent() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FORKED], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
