"""Stop a command on SIGINT/SIGTERM without a lock in the signal handler.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread is inside ``Event.wait()`` holding the event's internal lock (a plain, non-reentrant
Lock, held between entering ``wait`` and parking, and again on waking). A handler that calls
``event.set()`` there waits for that lock forever: the process ignores SIGTERM. A capture's
main loop waits on its stop event every poll interval, so the window is hit now and then.

Here the handler only writes a byte to a pipe (no Python lock is taken); a thread of its own
reads it and sets the event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals(
    event: threading.Event, signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> None:
    """From now on each of ``signals`` sets ``event`` (from the main thread only, as
    signal.signal requires). The pipe and its thread last as long as the process."""
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(w, False)  # a handler never waits: a full pipe has a wake-up in it
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        # a forked child (a replay worker) inherits the handler, not the thread: its
        # signal must not stop the parent through the shared pipe
        if os.getpid() == owner:
            with contextlib.suppress(OSError):
                os.write(w, b"\0")

    def relay() -> None:
        while os.read(r, 64):
            event.set()

    threading.Thread(target=relay, name="nodetap-signals", daemon=True).start()
    for sig in signals:
        signal.signal(sig, handler)
