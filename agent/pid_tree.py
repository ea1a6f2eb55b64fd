"""A process and its descendants, from /proc: what `-p PID` selects.

`nodetap capture -p "$(pgrep -o nginx)"` names nginx's master, which serves nothing; its
workers (children) accept the connections. The capture selects the pid and every
descendant alive at start; those forked later are added by the kernel side
(bpf/conn_lifecycle.c, sched_process_fork).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from nodetap.errors import ConfigError


def exists(pid: int) -> bool:
    return pid > 0 and os.path.isdir(f"/proc/{pid}")


def children(pid: int) -> set[int]:
    """Direct children of a process (of any of its threads); empty when it is gone."""
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def with_descendants(pids: Iterable[int]) -> list[int]:
    """The pids and all their descendants, sorted."""
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children(pid) - seen)
    return sorted(seen)


def check_exist(pids: Iterable[int]) -> None:
    """ConfigError naming the pids that are not running processes."""
    missing = [pid for pid in pids if not exists(pid)]
    if missing:
        raise ConfigError(
            f"-p {','.join(map(str, missing))}: no such process; "
            "give the pid of a running process (e.g. pgrep -o nginx)"
        )
