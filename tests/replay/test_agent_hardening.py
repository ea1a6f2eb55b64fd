"""The replay agent against a hostile or careless caller (issue 22): the namespace is the
operator's, caps on processes, vusers, upload size and runs, run ids the agent chooses, the
shared constant-time token check, no captured traffic left behind by a killed agent, and a
clear line for TLS files that are missing or wrong. Real `nodetap replay-agent` processes, a
real nginx target, and grpcio as the client."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from nodetap import jsonl, transport
from nodetap.v1 import replay_pb2 as rpb
from nodetap.v1 import replay_pb2_grpc as rgrpc
from replay.plan import Plan
from replay.remote_policy import AllowList
from replay.remote_service import serve
from tests.replay.helpers import record
from tests.support.servers import free_port, nginx, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hardening-token"
SECRET = "Bearer s3cr3t-from-the-capture"


@contextlib.contextmanager
def agent(tmp: Path, *extra: str, port: int = 0) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`nodetap replay-agent` on 127.0.0.1 with TMPDIR in tmp/t (where its files go)."""
    port = port or free_port()
    (tmp / "token").write_text(TOKEN)
    (tmp / "t").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "replay-agent", "--listen", f"127.0.0.1:{port}"]
        + ["--allow-target", "127.0.0.0/8", "--token-file", str(tmp / "token"), *extra],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp / "t")},
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _capture(tmp: Path, port: int, n: int) -> Path:
    cap = tmp / "cap.jsonl"
    reqs = [("GET", f"/hello?i={i}", [("Authorization", SECRET)], b"") for i in range(n)]
    record("127.0.0.1", port, reqs, cap)
    return cap


def _start(
    port: int, plan: dict[str, Any], cap: Path, run_id: str = "", token: str = TOKEN
) -> rpb.StartResponse:
    """Start a run as a hand-written client would (any plan JSON, any run id)."""

    def stream() -> Iterator[rpb.StartRequest]:
        spec = rpb.PlanSpec(plan_json=json.dumps(plan), run_id=run_id, share=0, shares=1)
        yield rpb.StartRequest(plan=spec)
        with cap.open() as f:
            for line in f:
                yield rpb.StartRequest(pair=jsonl.loads(line))

    with transport.channel(f"127.0.0.1:{port}") as ch:
        stub = rgrpc.ReplayAgentStub(ch)  # type: ignore[no-untyped-call]
        resp: rpb.StartResponse = stub.Start(
            stream(), metadata=transport.bearer_metadata(token), timeout=60
        )
        return resp


def _stub_call(port: int, method: str, req: Any) -> Any:
    with transport.channel(f"127.0.0.1:{port}") as ch:
        stub = rgrpc.ReplayAgentStub(ch)  # type: ignore[no-untyped-call]
        call = getattr(stub, method)(req, metadata=transport.bearer_metadata(TOKEN), timeout=30)
        return list(call) if method == "Watch" else call


def _plan(target: str, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(Plan(capture="", target=target).to_json())
    d.update(kw)
    return d


def _code(e: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return e.value.code()


def test_plan_cannot_choose_namespace_or_exceed_caps(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 3)
        caps = ("--max-vusers", "8", "--max-processes", "2", "--max-upload", "4K")
        with agent(tmp_path, *caps) as (port, _):
            for netns in ("../../proc/1/ns/net", "other"):
                with pytest.raises(grpc.RpcError) as e:
                    _start(port, _plan(ng.url, netns=netns), cap)
                assert _code(e) == grpc.StatusCode.PERMISSION_DENIED
                assert "--netns" in (e.value.details() or "")
            for kw, flag in (
                ({"vusers": 9}, "--max-vusers"),
                ({"processes": 3}, "--max-processes"),
            ):
                with pytest.raises(grpc.RpcError) as e:
                    _start(port, _plan(ng.url, **kw), cap)
                assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
                assert flag in (e.value.details() or "")
            big = tmp_path / "big.jsonl"
            big.write_text(cap.read_text() * 4)  # 12 pairs: over 4 KiB
            with pytest.raises(grpc.RpcError) as e:
                _start(port, _plan(ng.url, vusers=8), big)
            assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-upload" in (e.value.details() or "")
            # within the caps: runs, and the uploads refused left no file behind
            ok = _start(port, _plan(ng.url, vusers=8, processes=2), cap)
            last = _stub_call(port, "Watch", rpb.WatchRequest(run_id=ok.run_id))[-1]
            assert last.state == rpb.RUN_STATE_DONE, last.error
            assert json.loads(last.report_json)["requests"]["responses"] == 3
            assert _leftovers(tmp_path / "t") == []


def test_agent_chooses_run_ids_nobody_can_stop_anothers_run(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 20)
        with agent(tmp_path) as (port, _):
            first = _start(port, _plan(ng.url, rate=10.0), cap, run_id="victim")
            assert first.run_id != "victim" and len(first.run_id) == 32
            int(first.run_id, 16)
            second = _start(port, _plan(ng.url), cap, run_id="victim")
            assert second.run_id not in (first.run_id, "victim")
            stop = _stub_call(port, "Stop", rpb.StopRequest(run_id="victim"))
            assert not stop.stopped
            with pytest.raises(grpc.RpcError) as e:
                _stub_call(port, "Watch", rpb.WatchRequest(run_id="victim"))
            assert _code(e) == grpc.StatusCode.NOT_FOUND
            last = _stub_call(port, "Watch", rpb.WatchRequest(run_id=first.run_id))[-1]
            assert last.state == rpb.RUN_STATE_DONE  # ran to its end: 20 pairs at 10/s
            assert json.loads(last.report_json)["requests"]["sent"] == 20


def test_token_check_is_the_shared_constant_time_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    server, svc, port = serve("127.0.0.1:0", AllowList(["127.0.0.1"]), TOKEN)
    try:
        with pytest.raises(grpc.RpcError) as e, transport.channel(f"127.0.0.1:{port}") as ch:
            stub = rgrpc.ReplayAgentStub(ch)  # type: ignore[no-untyped-call]
            stub.Stop(
                rpb.StopRequest(run_id="x"), metadata=transport.bearer_metadata("wrong"), timeout=10
            )
        assert _code(e) == grpc.StatusCode.UNAUTHENTICATED
        assert calls == [(b"Bearer wrong", f"Bearer {TOKEN}".encode())]
    finally:
        svc.stop_all()
        server.stop(grace=0).wait()


def _leftovers(tmp: Path) -> list[str]:
    """Files under tmp that hold the capture's secret."""
    out = []
    for p in tmp.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and SECRET.encode() in p.read_bytes():
                out.append(str(p))
    return out


def _children(pid: int) -> list[int]:
    """The child processes of pid (started from any of its threads)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    """pid runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_killed_agent_leaves_no_captured_traffic(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 200)
        port = free_port()
        with agent(tmp_path, port=port) as (_, proc):
            run = _start(port, _plan(ng.url, rate=20.0), cap)
            folder = tmp_path / "t" / f"nodetap-replay-agent-{port}"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            held = _leftovers(tmp_path / "t")
            assert held and all(str(folder) in p for p in held)
            assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in held)
            kids = _children(proc.pid)
            assert run.run_id and kids
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # the run's process stops with the agent instead of replaying on, and cleans up
            deadline = time.monotonic() + 60  # a loaded machine is slow to reap
            while time.monotonic() < deadline and any(_alive(k) for k in kids):
                time.sleep(0.2)
            assert not any(_alive(k) for k in kids), "the run outlived its agent"
        with agent(tmp_path, port=port):  # the next start on the port empties the folder
            assert _leftovers(tmp_path / "t") == []
        assert not folder.exists(), "a normal stop removes the folder"


def test_missing_or_wrong_tls_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    base = [sys.executable, "-m", "cli", "replay-agent", "--listen", "0.0.0.0:0"]
    base += ["--allow-target", "10.0.0.0/8", "--token-file", str(tmp_path / "token")]
    for extra, words in (
        (
            ["--tls-cert", str(tmp_path / "no.pem"), "--tls-key", str(tmp_path / "no.key")],
            "cannot read --tls-cert",
        ),
        (["--tls-cert", str(junk), "--tls-key", str(junk)], "not a PEM certificate"),
        (["--tls-cert", str(junk)], "without TLS"),
    ):
        proc = subprocess.run(base + extra, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_operator_netns_must_be_a_namespace_name() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "replay-agent", "--listen", "127.0.0.1:0"]
        + ["--allow-target", "127.0.0.1", "--netns", "../../proc/1/ns/net"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "ip netns list" in proc.stderr, proc.stderr
