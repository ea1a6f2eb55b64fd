"""Mocks during a replay: the service under test's recorded outbound exchanges answered by a
responder, its connections to the recorded dependencies redirected there for the replay's
duration (netsetup/redirect.py), and what the mocks served and missed, for the report.

    with MockSession.start("cap.jsonl", sut_pid=4242, target=("127.0.0.1", 8080)) as m:
        report = run_replay(plan)
    report["mocks"] = m.report()
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsetup.redirect import Dependency, Redirect, in_pid_netns
from nodetap.errors import ConfigError, InputError
from replay.mocks import MockSet, load_mocks
from replay.responder import Responder


def process_tree(pid: int) -> set[int]:
    """pid and its descendants now running (a master and its workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += children.get(p, [])
    return out


def _listen_here() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    s.setblocking(False)
    return s


@dataclass
class MockSession:
    mocks: MockSet
    responder: Responder
    redirect: Redirect
    pids: set[int] = field(default_factory=set)

    @classmethod
    def start(
        cls,
        capture: str,
        sut_pid: int,
        target: tuple[str, int],
        ignore_json_paths: list[str] | None = None,
    ) -> MockSession:
        if not os.path.exists(f"/proc/{sut_pid}"):
            raise ConfigError(f"--sut-pid {sut_pid}: no such process; give the service's pid")
        pids = process_tree(sut_pid)
        mocks = load_mocks(capture, "outbound", ignore_json_paths or [], pids)
        if not len(mocks):
            raise InputError(
                f"capture {capture} holds no outbound HTTP exchange of process {sut_pid} or its "
                "children (the service's calls to its dependencies); capture them with the "
                "service (both its ports, or -p PID), or drop --mocks"
            )
        own = f"{target[0]}:{target[1]}"
        deps = [Dependency.parse(d) for d in mocks.dependencies if d != own and d.split(":")[0]]
        sock = in_pid_netns(sut_pid, _listen_here)
        responder = Responder(mocks, sock=sock)
        responder.start()
        redirect = Redirect(sut_pid, deps, responder.port)
        try:
            redirect.apply()
        except BaseException:
            responder.close()
            raise
        return cls(mocks, responder, redirect, pids)

    def lines(self) -> list[str]:
        return self.redirect.lines()

    def close(self) -> None:
        try:
            self.redirect.remove()
        finally:
            self.responder.close()

    def report(self) -> dict[str, Any]:
        r = self.mocks.report()
        r["sut_pids"] = sorted(self.pids)
        r["redirected"] = [f"{d.ip}:{d.port}" for d in self.redirect.dependencies]
        return r

    def __enter__(self) -> MockSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
