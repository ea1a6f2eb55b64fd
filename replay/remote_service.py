"""The remote replay service: runs the plans a coordinator (replay/distributed.py) sends.

It serves the gRPC service nodetap.v1.ReplayAgent; `nodetap replay-agent` starts it.
Safety: off unless started; a listener on a non-loopback address is refused without TLS and a
bearer token; every call must carry the token when one is set (the constant-time check of
nodetap/transport.py, shared with the forwarder); a plan whose target is outside
``allow_targets`` (host names or CIDRs) is refused; the network namespace is the operator's
(``--netns``), never the caller's (a plan naming one is refused); processes, vusers, upload
size and concurrent runs are capped (``Limits``); the service chooses run ids (random, 128
bits), so a caller can watch or stop only the runs it started. Each run is a child process
(``python -m replay.remote_run``) whose status lines the service relays to Watch streams; its
uploaded pairs live in a private 0700 folder (``WorkDir``), emptied at start and at exit, and
the child dies with the service.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
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
from replay.remote_policy import AllowList, Limits, check_tls_files, is_loopback, split_listen
from replay.workdir import WorkDir

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
STATES = {
    "running": rpb.RUN_STATE_RUNNING,
    "done": rpb.RUN_STATE_DONE,
    "stopped": rpb.RUN_STATE_STOPPED,
    "failed": rpb.RUN_STATE_FAILED,
}


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
            if "report" in msg or "error" in msg:
                # the run is over: its uploaded pairs go before a watcher hears so
                self._remove_files()
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
        self._remove_files()
        with self.cond:
            if self.state == "running":
                self.state, self.error = "failed", f"replay process exited with {rc}"
            self.version += 1
            self.cond.notify_all()

    def _remove_files(self) -> None:
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


def _names_netns(plan_json: str) -> bool:
    try:
        d = json.loads(plan_json)
    except (ValueError, RecursionError):
        return False  # Plan.from_json says what is wrong
    return isinstance(d, dict) and bool(d.get("netns"))


def with_suppress_unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class RemoteReplayService(rgrpc.ReplayAgentServicer):
    """nodetap.v1.ReplayAgent: Start (a plan and its RRPairs), Watch (status until the end),
    Stop."""

    def __init__(
        self,
        allow: AllowList,
        netns: str | None = None,
        limits: Limits | None = None,
        workdir: WorkDir | None = None,
    ) -> None:
        self.allow = allow
        self.netns = netns
        self.limits = limits or Limits()
        self.workdir = workdir or WorkDir.private()
        self.runs: dict[str, RemoteRun] = {}
        self.lock = threading.Lock()

    def _check(self, plan: Plan, context: Any) -> None:
        """Abort the call unless the plan keeps to what the operator allows; fill in the
        operator's choices (namespace, processes)."""
        lim = self.limits
        host, _ = parse_target(plan.target)
        if not self.allow.allows(host):
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"target {host} is outside this replay agent's --allow-target list ({self.allow})",
            )
        if plan.processes > lim.max_processes:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{plan.processes} processes asked, this replay agent runs at most "
                f"{lim.max_processes} per run (--max-processes); ask for fewer",
            )
        if plan.vusers > lim.max_vusers:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{plan.vusers} vusers asked, this replay agent runs at most {lim.max_vusers} "
                "per run (--max-vusers); ask for fewer",
            )
        plan.netns = self.netns
        plan.processes = plan.processes or min(os.cpu_count() or 1, lim.max_processes)

    def _receive(self, requests: Iterator[rpb.StartRequest], fd: int, context: Any) -> int:
        """Write the pairs of a Start stream to the file fd; abort past the upload limit."""
        n = size = 0
        cap = self.limits.max_upload_bytes
        with open(fd, "w", encoding="utf-8") as f:
            for req in requests:
                if req.WhichOneof("part") != "pair":
                    continue
                size += req.pair.ByteSize()
                if size > cap:
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the pairs sent exceed this replay agent's upload limit of {cap} bytes "
                        "(--max-upload); send a smaller capture or use more agents",
                    )
                jsonl.write(f, req.pair)
                n += 1
        return n

    def _running(self) -> int:
        with self.lock:
            return sum(1 for r in self.runs.values() if r.state == "running")

    def _forget_finished(self) -> None:
        """Keep the finished runs a while for late Watch calls, not forever."""
        with self.lock:
            done = [k for k, r in self.runs.items() if r.state != "running"]
            for k in done[: max(0, len(done) - 64)]:
                del self.runs[k]

    def Start(
        self, request_iterator: Iterator[rpb.StartRequest], context: Any
    ) -> rpb.StartResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "plan":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be the plan")
            raise AssertionError  # abort raises
        spec = first.plan
        if _names_netns(spec.plan_json):
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "the plan names a network namespace; the replay agent's operator chooses it "
                "(replay-agent --netns): leave it out of the plan",
            )
        try:
            plan = Plan.from_json(spec.plan_json)
        except (NodetapError, ValueError, TypeError, AttributeError, RecursionError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad plan: {e}")
        self._check(plan, context)
        if self._running() >= self.limits.max_runs:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this replay agent already runs {self.limits.max_runs} plans (--max-runs); "
                "wait for one to end",
            )
        # The service chooses the id (whatever the caller sent): only who started a run
        # learns it, so nobody can watch or stop another caller's run.
        run_id = secrets.token_hex(16)
        cap_path = self.workdir.path(f"{run_id}.jsonl")
        plan_path = self.workdir.path(f"{run_id}.plan.json")
        try:
            n = self._receive(request_iterator, self.workdir.create(f"{run_id}.jsonl"), context)
            plan.capture = cap_path
            with open(self.workdir.create(f"{run_id}.plan.json"), "w") as f:
                f.write(plan.to_json())
        except BaseException:
            for p in (cap_path, plan_path):
                with_suppress_unlink(p)
            raise
        proc = subprocess.Popen(
            [sys.executable, "-m", "replay.remote_run", plan_path, str(os.getpid())],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(self.workdir.root)},
        )
        run = RemoteRun(run_id, proc, plan_path, cap_path)
        self._forget_finished()
        with self.lock:
            self.runs[run_id] = run
        threading.Thread(target=run.pump, daemon=True, name=f"run-{run_id[:8]}").start()
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
        self.workdir.remove()


def serve(
    listen: str,
    allow: AllowList,
    token: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    netns: str | None = None,
    limits: Limits | None = None,
    work_base: str | None = None,
) -> tuple[grpc.Server, RemoteReplayService, int]:
    """Start the service (checks the safety rules first); returns its server, itself and port.

    Uploaded pairs wait for their run in a private folder named for the port, under work_base
    (default: the system's temporary folder), emptied now and removed by stop_all."""
    host, port = split_listen(listen)
    if not is_loopback(host) and not (token and tls_cert and tls_key):
        raise ConfigError(
            f"refusing to listen on {listen} without TLS and a token; give --tls-cert, --tls-key "
            "and --token-file, or listen on 127.0.0.1"
        )
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("give both --tls-cert and --tls-key (TLS needs the certificate and key)")
    if tls_cert and tls_key:
        check_tls_files(tls_cert, tls_key)
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
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls = transport.ServerTLS(tls_cert, tls_key) if tls_cert and tls_key else None
    try:
        bound = transport.add_port(server, addr, tls)
    except RuntimeError as e:
        raise HostError(f"cannot listen on {listen}: {e}; pick another --listen") from None
    if not bound:
        raise HostError(f"cannot listen on {listen}; is the port in use?")
    svc = RemoteReplayService(
        allow, netns, limits, WorkDir.private(f"nodetap-replay-agent-{bound}", work_base)
    )
    rgrpc.add_ReplayAgentServicer_to_server(svc, server)  # type: ignore[no-untyped-call]
    server.start()
    return server, svc, bound
