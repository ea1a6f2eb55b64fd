"""A real nats-server cluster with JetStream on loopback, for tests.

``nats_cluster(3)`` starts three nats-server processes (Debian's package) on free loopback
ports, each with its own store directory in a temporary directory and routes to the others,
waits until JetStream has elected a meta leader, and on exit stops every process it started by
PID and removes its directories. Nodes can be SIGKILLed and started again (same ports, same
store) to test faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

_CONF = """
server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{http}
jetstream {{
    store_dir: "{store}"
    max_memory_store: 64MB
    max_file_store: 2GB
}}
cluster {{
    name: nodetap-test
    listen: 127.0.0.1:{route}
    routes: [{routes}]
}}
"""


@dataclass
class NatsNode:
    name: str
    port: int
    http: int
    route: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class NatsCluster:
    nodes: list[NatsNode]
    root: Path
    _log_files: list[object] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The --store value: nats://host:port,host:port,..."""
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, i: int) -> None:
        node = self.nodes[i]
        if node.running:
            return
        log = open(node.root / "server.log", "ab")  # noqa: SIM115 - closed in stop_all
        self._log_files.append(log)
        node.proc = subprocess.Popen(
            [NATS_SERVER, "-c", str(node.root / "nats.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", node.port, timeout=30)
        except TimeoutError:
            log.flush()
            tail = (node.root / "server.log").read_text(errors="replace")[-800:]
            raise TimeoutError(f"nats-server {node.name} did not listen: {tail}") from None

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            os.kill(node.proc.pid, sig)
            node.proc.wait(timeout=15)
        node.proc = None

    def kill_named(self, name: str | None, sig: int = signal.SIGKILL) -> None:
        """Kill the node called ``name`` (a leader, as /jsz names it)."""
        self.kill(next(i for i, n in enumerate(self.nodes) if n.name == name), sig)

    def start_all(self) -> None:
        for i in range(len(self.nodes)):
            self.start(i)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for i in range(len(self.nodes)):
            self.kill(i, sig)

    def jsz(self, i: int, query: str = "") -> dict[str, object]:
        url = f"http://127.0.0.1:{self.nodes[i].http}/jsz{query}"
        with urllib.request.urlopen(url, timeout=2) as r:
            data: dict[str, object] = json.load(r)
        return data

    def _running_jsz(self, query: str = "") -> Iterator[tuple[NatsNode, dict[str, object]]]:
        """Each running node with its /jsz, those that answer."""
        for i, node in enumerate(self.nodes):
            if not node.running:
                continue
            try:
                jsz = self.jsz(i, query)
            except (OSError, ValueError):
                continue
            yield node, jsz

    def meta_leader(self) -> str | None:
        for node, jsz in self._running_jsz():
            if len(self.nodes) == 1 and jsz.get("config"):
                return node.name  # not clustered: JetStream is up
            meta = jsz.get("meta_cluster") or {}
            leader = meta.get("leader") if isinstance(meta, dict) else None
            if leader:
                return str(leader)
        return None

    def consumer_leaders(self, stream: str) -> list[str]:
        """The names of the nodes that lead stream's consumers now."""
        leaders: set[str] = set()
        for _, jsz in self._running_jsz("?consumers=true"):
            for account in jsz.get("account_details") or []:  # type: ignore[attr-defined]
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") != stream:
                        continue
                    for consumer in detail.get("consumer_detail") or []:
                        leader = (consumer.get("cluster") or {}).get("leader")
                        if leader:
                            leaders.add(str(leader))
        return sorted(leaders)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the running nodes agree on a JetStream meta leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.meta_leader():
                return
            time.sleep(0.1)
        raise TimeoutError(f"no JetStream meta leader after {timeout}s (logs in {self.root})")


def _make(n: int, root: Path, extra_conf: str = "") -> NatsCluster:
    nodes = []
    for i in range(n):
        name = f"n{i + 1}"
        d = root / name
        (d / "store").mkdir(parents=True)
        nodes.append(NatsNode(name, free_port(), free_port(), free_port(), d))
    for node in nodes:
        routes = ", ".join(f"nats-route://127.0.0.1:{o.route}" for o in nodes if o is not node)
        conf = _CONF.format(
            name=node.name,
            port=node.port,
            http=node.http,
            route=node.route,
            store=node.root / "store",
            routes=routes,
        )
        (node.root / "nats.conf").write_text(extra_conf + conf)
    return NatsCluster(nodes, root)


@contextlib.contextmanager
def nats_cluster(n: int = 3, extra_conf: str = "") -> Iterator[NatsCluster]:
    """n nats-server nodes with JetStream, clustered when n > 1; stopped and removed after.
    extra_conf goes at the top of every node's configuration (authorization, ...)."""
    root = Path(tempfile.mkdtemp(prefix="nodetap-nats-"))
    cluster = _make(n, root, extra_conf)
    if n == 1:
        conf = cluster.nodes[0].root / "nats.conf"
        text = conf.read_text()
        conf.write_text(text[: text.index("cluster {")])
    try:
        cluster.start_all()
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.kill_all(signal.SIGTERM)
        for f in cluster._log_files:
            f.close()  # type: ignore[attr-defined]
        shutil.rmtree(root, ignore_errors=True)


# forwarder pid -> the file its stderr (with -v) goes to: a failing test prints it
FORWARDER_LOGS: dict[int, Path] = {}


def start_nats_forwarder(port: int, store: str, *extra: str) -> subprocess.Popen[bytes]:
    """A real `nodetap forwarder -v --store nats://...` process on 127.0.0.1:port; its
    stderr goes to a file (forwarder_log), not to a pipe nobody reads."""
    import sys

    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "cli", "forwarder", "-v", "--listen", f"127.0.0.1:{port}"]
    fd, log = tempfile.mkstemp(prefix="nodetap-forwarder-", suffix=".log")
    try:
        proc = subprocess.Popen(
            [*argv, "--store", store, *extra], cwd=root, stdout=subprocess.DEVNULL, stderr=fd
        )
    finally:
        os.close(fd)
    FORWARDER_LOGS[proc.pid] = Path(log)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise AssertionError(f"forwarder did not start: {forwarder_log(proc)}") from None
    return proc


def forwarder_log(proc: subprocess.Popen[bytes], tail: int = 4000) -> str:
    """The end of a forwarder's stderr (start_nats_forwarder); the file is removed."""
    path = FORWARDER_LOGS.pop(proc.pid, None)
    if path is None:
        return ""
    try:
        return path.read_text(errors="replace")[-tail:]
    except OSError:
        return ""
    finally:
        path.unlink(missing_ok=True)
