"""The remote replay service: runs the plans a coordinator (replay/distributed.py) sends.

It serves the gRPC service nodetap.v1.ReplayAgent; `nodetap replay-agent` starts it.
Safety: off unless started; a listener on a non-loopback address is refused without TLS and a
bearer token; every call must carry the token when one is set; a plan whose target is outside
``allow_targets`` (host names or CIDRs) is refused. Each run is a child process
(``python -m replay.remote_run``) whose status lines the service relays to Watch streams.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from nodetap import jsonl, transport
from nodetap.errors import ConfigError, HostError, NodetapError
from nodetap.v1 import replay_pb2 as rpb
from nodetap.v1 import replay_pb2_grpc as rgrpc
from replay.plan import Plan, parse_target

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
STATES = {
    "running": rpb.RUN_STATE_RUNNING,
    "done": rpb.RUN_STATE_DONE,
    "stopped": rpb.RUN_STATE_STOPPED,
    "failed": rpb.RUN_STATE_FAILED,
}


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--listen {addr!r}: give HOST:PORT, like 127.0.0.1:7070")
    return host.strip("[]"), int(port)


class AllowList:
    """Targets the service may send to: host names (exact) and CIDRs."""

    def __init__(self, entries: list[str]) -> None:
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for e in entries:
            for part in (p.strip() for p in e.split(",")):
                if not part:
                    continue
                try:
                    self.nets.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    self.names.add(part.lower())

    def allows(self, host: str) -> bool:
        if host.lower() in self.names:
            return True
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                ips = [ipaddress.ip_address(ai[4][0]) for ai in socket.getaddrinfo(host, None)]
            except OSError:
                return False
        return bool(ips) and all(any(ip in n for n in self.nets) for ip in ips)

    def __str__(self) -> str:
        return ", ".join([*map(str, self.nets), *sorted(self.names)]) or "(nothing)"


@dataclass
class RemoteRun:
    """One plan running in a child process (replay/remote_run.py)."""

    run_id: str
    proc: subprocess.Popen[str]
    plan_path: str
    capture_path: str
    state: str = "running"
    status: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    error: str = ""
    cond: threading.Condition = field(default_factory=threading.Condition)
    version: int = 0

    def pump(self) -> None:
        """Read the child's status lines until it exits."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                if "status" in msg:
                    self.status = msg["status"]
                elif "report" in msg:
                    self.report = msg["report"]
                    self.state = "stopped" if msg.get("stopped") else "done"
                elif "error" in msg:
                    self.error, self.state = msg["error"], "failed"
                self.version += 1
                self.cond.notify_all()
        rc = self.proc.wait()
        with self.cond:
            if self.state == "running":
                self.state, self.error = "failed", f"replay process exited with {rc}"
            self.version += 1
            self.cond.notify_all()
        for p in (self.plan_path, self.capture_path):
            with_suppress_unlink(p)

    def to_status(self) -> rpb.RunStatus:
        s = self.status
        return rpb.RunStatus(
            run_id=self.run_id,
            state=STATES[self.state],
            elapsed_s=float(s.get("elapsed_s", 0.0)),
            sent=int(s.get("sent", 0)),
            errors=int(s.get("errors", 0)),
            mismatched=int(s.get("mismatched", 0)),
            conntrack_count=int(s.get("conntrack_count", 0)),
            conntrack_max=int(s.get("conntrack_max", 0)),
            conntrack_throttled=bool(s.get("conntrack_throttled", False)),
            cpu_throttled_periods=int(s.get("cpu_throttled_periods", 0)),
            report_json=json.dumps(self.report, default=str) if self.report else "",
            error=self.error,
        )


def with_suppress_unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class RemoteReplayService(rgrpc.ReplayAgentServicer):
    """nodetap.v1.ReplayAgent: Start (a plan and its RRPairs), Watch (status until the end),
    Stop."""

    def __init__(self, allow: AllowList, netns: str | None = None) -> None:
        self.allow = allow
        self.netns = netns
        self.runs: dict[str, RemoteRun] = {}
        self.lock = threading.Lock()

    def Start(
        self, request_iterator: Iterator[rpb.StartRequest], context: Any
    ) -> rpb.StartResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "plan":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be the plan")
            raise AssertionError  # abort raises
        spec = first.plan
        try:
            plan = Plan.from_json(spec.plan_json)
        except (NodetapError, ValueError, TypeError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad plan: {e}")
        host, _ = parse_target(plan.target)
        if not self.allow.allows(host):
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"target {host} is outside this replay agent's --allow-target list ({self.allow})",
            )
        run_id = spec.run_id or uuid.uuid4().hex[:12]
        fd, cap_path = tempfile.mkstemp(prefix="nodetap-remote-", suffix=".jsonl")
        n = 0
        with os.fdopen(fd, "w") as f:
            for req in request_iterator:
                if req.WhichOneof("part") == "pair":
                    jsonl.write(f, req.pair)
                    n += 1
        plan.capture = cap_path
        if self.netns and not plan.netns:
            plan.netns = self.netns
        pfd, plan_path = tempfile.mkstemp(prefix="nodetap-plan-", suffix=".json")
        with os.fdopen(pfd, "w") as f:
            f.write(plan.to_json())
        proc = subprocess.Popen(
            [sys.executable, "-m", "replay.remote_run", plan_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        run = RemoteRun(run_id, proc, plan_path, cap_path)
        with self.lock:
            self.runs[run_id] = run
        threading.Thread(target=run.pump, daemon=True, name=f"run-{run_id}").start()
        log.info("run %s started: %d pairs to %s", run_id, n, plan.target)
        return rpb.StartResponse(run_id=run_id, pairs=n)

    def Stop(self, request: rpb.StopRequest, context: Any) -> rpb.StopResponse:
        run = self.runs.get(request.run_id)
        if run is None or run.state != "running":
            return rpb.StopResponse(stopped=False)
        run.proc.send_signal(signal.SIGTERM)
        return rpb.StopResponse(stopped=True)

    def Watch(self, request: rpb.WatchRequest, context: Any) -> Iterator[rpb.RunStatus]:
        run = self.runs.get(request.run_id)
        if run is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id!r}")
            return
        seen = -1
        while context.is_active():
            with run.cond:
                if run.version == seen:
                    run.cond.wait(timeout=1.0)
                seen = run.version
                status = run.to_status()
                state = run.state
            yield status
            if state != "running":
                return

    def stop_all(self) -> None:
        for run in list(self.runs.values()):
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
        for run in list(self.runs.values()):
            try:
                run.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.proc.kill()


def serve(
    listen: str,
    allow: AllowList,
    token: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    netns: str | None = None,
) -> tuple[grpc.Server, RemoteReplayService, int]:
    """Start the service (checks the safety rules first); returns its server, itself and port."""
    host, port = split_listen(listen)
    if not is_loopback(host) and not (token and tls_cert and tls_key):
        raise ConfigError(
            f"refusing to listen on {listen} without TLS and a token; give --tls-cert, --tls-key "
            "and --token-file, or listen on 127.0.0.1"
        )
    if not allow.nets and not allow.names:
        raise ConfigError(
            "no --allow-target given; name the hosts or CIDRs this agent may replay to"
        )
    # The host is busy replaying: no keepalive pings that a slow answer would turn into a loss.
    server = transport.server(
        max_workers=16,
        auth=transport.TokenAuth(token) if token else None,
        keepalive=False,
    )
    svc = RemoteReplayService(allow, netns)
    rgrpc.add_ReplayAgentServicer_to_server(svc, server)  # type: ignore[no-untyped-call]
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls = transport.ServerTLS(tls_cert, tls_key) if tls_cert and tls_key else None
    try:
        bound = transport.add_port(server, addr, tls)
    except RuntimeError as e:
        raise HostError(f"cannot listen on {listen}: {e}; pick another --listen") from None
    if not bound:
        raise HostError(f"cannot listen on {listen}; is the port in use?")
    server.start()
    return server, svc, bound
