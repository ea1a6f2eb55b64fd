"""The child process of one run of the remote replay service (replay/remote_service.py): runs
a plan, prints JSON status lines on stdout, the last one with the report. SIGTERM stops the run
early (the report covers what was sent).

    python -m replay.remote_run PLAN.json [SERVICE_PID]

The service runs each plan in such a child so that the replay's worker processes are forked
from a process without gRPC threads. The child stops its run when the service dies (even by
SIGKILL: PR_SET_PDEATHSIG), and removes the plan and its capture when it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
from typing import Any

from nodetap.errors import NodetapError
from nodetap.signals import stop_on_signals
from replay.plan import Plan
from replay.runner import run_replay

PR_SET_PDEATHSIG = 1


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    stop = threading.Event()
    stop_on_signals(stop, (signal.SIGTERM,))
    # Stop with the service, even when it is killed with SIGKILL.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if len(argv) > 1 and os.getppid() != int(argv[1]):
        stop.set()  # the service died before the line above
    with open(argv[0]) as f:
        plan = Plan.from_json(f.read())
    try:
        return _run(plan, stop)
    finally:
        for path in (argv[0], plan.capture):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _run(plan: Plan, stop: threading.Event) -> int:
    try:
        report = run_replay(
            plan,
            progress=False,
            stop=stop,
            on_status=lambda s: _emit({"status": s}),
            preflight_out=lambda line: _emit({"preflight": line}),
        )
    except NodetapError as e:
        _emit({"error": str(e)})
        return 2
    _emit({"report": report, "stopped": stop.is_set()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
