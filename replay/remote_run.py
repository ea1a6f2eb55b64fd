"""The child process of one run of the remote replay service (replay/remote_service.py): runs
a plan, prints JSON status lines on stdout, the last one with the report. SIGTERM stops the run
early (the report covers what was sent).

    python -m replay.remote_run PLAN.json

The service runs each plan in such a child so that the replay's worker processes are forked
from a process without gRPC threads.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from nodetap.errors import NodetapError
from replay.plan import Plan
from replay.runner import run_replay


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        plan = Plan.from_json(f.read())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
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
