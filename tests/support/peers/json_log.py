"""A peer server started by a test that logs one JSON object per request on its stdout
(the Node.js and uvicorn peers): the log is read by a thread as it comes."""

from __future__ import annotations

import json
import subprocess
import threading


class JsonLogServer:
    """A running server; lines of its stdout that are JSON objects are its request log."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc
        self.log_lines: list[dict[str, object]] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"{"):
                with self._cv:
                    self.log_lines.append(json.loads(line))
                    self._cv.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def requests(self, expect: int, timeout: float = 20.0) -> list[dict[str, object]]:
        """The server's log of its requests, once `expect` lines are in (or on timeout)."""
        with self._cv:
            self._cv.wait_for(lambda: len(self.log_lines) >= expect, timeout)
            return list(self.log_lines)
