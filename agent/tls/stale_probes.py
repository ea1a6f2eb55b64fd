"""TLS uprobes that a killed capture left in tracefs, removed by the next one.

BCC makes each uprobe a tracefs event (``uprobe_events``) named after the probed file, the
offset and the pid of the process that made it (``…_bcc_PID``), and removes it when that
process detaches or exits cleanly. A capture that is killed (SIGKILL, an OOM kill) cannot:
the kernel keeps the event, unused but listed, holding a reference to the probed file's
inode, until someone removes it. nodetap probes files only through its own open descriptors
(agent/tls/attach.py: ``/proc/self/fd/N``), so its events are the ones named
``…_proc_self_fd_N_0x…_bcc_PID``; those whose PID no longer runs are removed when a capture
with TLS starts.

Pids are only comparable in the host's pid namespace (the DaemonSet runs with hostPID): in
another namespace every pid of the host looks gone, so nothing is removed there.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from prometheus_client import Counter

log = logging.getLogger(__name__)

# a uprobe nodetap made: (p|r):uprobes/(p|r)__proc_self_fd_<fd>_0x<offset>_bcc_<pid>
_OURS = re.compile(r"^[pr]:(?P<name>[\w.-]+/[pr]__proc_self_fd_\d+_0x[0-9a-f]+_bcc_(?P<pid>\d+))\s")
# /proc/self/ns/pid of the initial pid namespace (PROC_PID_INIT_INO in the kernel)
_INIT_PID_NS = 0xEFFFFFFC

REMOVED = Counter(
    "nodetap_tls_stale_probes_removed",
    "TLS uprobes of captures that stopped without a clean exit, removed from tracefs",
)


def in_host_pid_namespace() -> bool:
    try:
        return os.stat("/proc/self/ns/pid").st_ino == _INIT_PID_NS
    except OSError:
        return False


def stale(events: str, running: set[int] | None = None) -> list[str]:
    """The names of nodetap's uprobes in ``events`` (uprobe_events' text) whose process
    does not run (``running``: the pids that do; None reads /proc)."""
    out = []
    for line in events.splitlines():
        m = _OURS.match(line + " ")
        if not m:
            continue
        pid = int(m["pid"])
        alive = pid in running if running is not None else Path(f"/proc/{pid}").exists()
        if not alive:
            out.append(m["name"])
    return out


def write_event(events: Path, line: str) -> bool:
    """One command to a tracefs events file (buffered Python files seek there, which tracefs
    refuses); False when the kernel refuses it (busy, already gone): the rest go on."""
    try:
        fd = os.open(events, os.O_WRONLY | os.O_APPEND)
    except OSError as e:
        log.debug("%s: %s", events, e)
        return False
    try:
        os.write(fd, f"{line}\n".encode())
        return True
    except OSError as e:
        log.debug("%s: %r: %s", events, line, e)
        return False
    finally:
        os.close(fd)


def sweep(tracefs: Path) -> int:
    """Remove nodetap's uprobes left by captures that no longer run; how many were."""
    if not in_host_pid_namespace():
        return 0
    f = tracefs / "uprobe_events"
    try:
        names = stale(f.read_text())
    except OSError as e:
        log.debug("stale TLS probes: %s: %s", f, e)
        return 0
    removed = 0
    for name in names:
        if write_event(f, f"-:{name}"):
            removed += 1
    if removed:
        REMOVED.inc(removed)
        log.info("removed %d TLS uprobes that killed captures left in %s", removed, f)
    return removed
