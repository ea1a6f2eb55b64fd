"""What a crash loses, counted on the next start (issue 22).

A running capture keeps, once a second, a small ledger in the system's temporary folder
($TMPDIR): its pid and start time and how many bytes of records wait undecoded in the
kernel's ring buffer (records are decoded at once, in memory: nothing waits on disk). A
clean stop removes the ledger. A capture that is killed (SIGKILL, an OOM kill) cannot: the
next capture that starts finds the ledger of a process that no longer runs, says in one log
line how many bytes that capture lost, counts them (``nodetap_backlog_lost_bytes_total``,
``nodetap_unclean_stops_total``) and removes whatever raw bytes the dead capture left (the
spool folder a ledger of an older version names).

The ledger holds sizes only, never captured bytes. The count is at most a second old: bytes
that arrived in the last second before the kill are not in it (the decoder's memory is not
counted either; see README: Limits).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter

log = logging.getLogger(__name__)

PREFIX = "nodetap-backlog-"
LOST_BYTES = Counter(
    "nodetap_backlog_lost_bytes",
    "Bytes of undecoded backlog that a capture killed before a clean stop left behind "
    "(counted by the next capture that starts with the same folder)",
)
UNCLEAN_STOPS = Counter(
    "nodetap_unclean_stops",
    "Captures found stopped without a clean exit (killed) by the next capture's start",
)


@dataclass(frozen=True, slots=True)
class Lost:
    captures: int = 0  # earlier captures that stopped without a clean exit
    bytes: int = 0  # their undecoded backlog

    def line(self) -> str:
        return (
            f"nodetap: warning: {self.captures} earlier capture(s) stopped without a clean exit "
            f"(killed?); {self.bytes} bytes of their undecoded backlog were lost "
            "(nodetap_backlog_lost_bytes_total)"
        )


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None when it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def folder_size(folder: str | None) -> int:
    """Bytes of the regular files in folder (0 when it is gone)."""
    if not folder:
        return 0
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def recover(folder: str | None = None) -> Lost:
    """Count and remove what captures that no longer run left in folder."""
    base = Path(folder or tempfile.gettempdir())
    captures = lost = 0
    for path in base.glob(f"{PREFIX}*.json"):
        try:
            doc = json.loads(path.read_text())
            pid, started = int(doc["pid"]), str(doc["started"])
            backlog, spool = int(doc.get("backlog_bytes", 0)), doc.get("spool_dir")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
        if _start_time(pid) == started:
            continue  # still running (another capture on this folder)
        if spool and Path(spool).is_dir():  # the drain did not remove it: measure, remove
            backlog = max(backlog, folder_size(spool))
            shutil.rmtree(spool, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        captures += 1
        lost += backlog
    if captures:
        UNCLEAN_STOPS.inc(captures)
        LOST_BYTES.inc(lost)
    return Lost(captures, lost)


class Ledger:
    """This capture's ledger: written every `interval` seconds by a thread with what
    `measure()` says (undecoded bytes); removed by close()."""

    def __init__(
        self,
        folder: str | None,
        measure: Callable[[], int],
        interval: float = 1.0,
    ) -> None:
        self.path = Path(folder or tempfile.gettempdir()) / f"{PREFIX}{os.getpid()}.json"
        self._measure = measure
        self._interval = interval
        self._started = _start_time(os.getpid()) or "?"
        self._stop = threading.Event()
        self.write()
        self._thread = threading.Thread(target=self._run, name="nodetap-ledger", daemon=True)
        self._thread.start()

    def write(self) -> None:
        doc = {"pid": os.getpid(), "started": self._started, "backlog_bytes": self._measure()}
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.path)
        except OSError as e:  # a full disk must not stop the capture
            log.debug("backlog ledger %s: %s", self.path, e)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.write()

    def close(self) -> None:
        """A clean stop: nothing was lost that the summary does not say."""
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
