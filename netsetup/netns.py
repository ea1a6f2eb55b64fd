"""Network namespaces by name (/run/netns/NAME, as made by `ip netns add` or pyroute2's
``netns.create``): entering one for good (a replay worker process), or running one function in
one from a short-lived thread while the rest of the process stays where it is."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import netns as pyroute2_netns

from nodetap.errors import ConfigError, HostError

T = TypeVar("T")


def require(name: str) -> None:
    """ConfigError unless netns NAME exists."""
    if name not in pyroute2_netns.listnetns():
        raise ConfigError(
            f"network namespace {name!r} does not exist; give one that `ip netns list` shows"
        )


def enter_netns(name: str) -> None:
    """Move the calling thread (the whole process when it has one thread) into netns NAME."""
    require(name)
    try:
        # flags=0: pyroute2's default (O_CREAT) would make a namespace that does not exist.
        pyroute2_netns.setns(name, flags=0)
    except PermissionError:
        raise HostError(f"entering network namespace {name!r} needs root (CAP_SYS_ADMIN)") from None


def in_netns(netns: str | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) inside netns, or here when netns is None.

    The function runs in a thread of its own that enters the namespace and ends with the call:
    sockets (netlink, nftables, libiptc), /proc/sys/net and /proc/thread-self/net opened there
    belong to that namespace; the calling thread never moves. What fn raises is raised here."""
    if not netns:
        return fn(*args)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            enter_netns(netns)
            outcome["value"] = fn(*args)
        except BaseException as e:  # handed to the caller below
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"netns:{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def read_sysctl(path: str, netns: str | None = None) -> str:
    """A /proc/sys file as seen in netns (net.* values are per namespace)."""

    def read() -> str:
        with open(path) as f:
            return f.read().strip()

    return in_netns(netns, read)
