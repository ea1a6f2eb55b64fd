"""kubectl's selectors wherever RRPairs are selected (issue 25): `-n NAMESPACE` and
`-l key=value` on export (stored, live tail, a file), snapshot create and replay (a file or
a snapshot by name), against a real forwarder process and nginx as the replay target."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwarder.filters import label_requirements, matches, parse_filters
from nodetap import jsonl
from nodetap.errors import ConfigError
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.servers import free_port, nginx, wait_for_port

REPO = Path(__file__).resolve().parents[2]

# (id, namespace, labels): what each recorded RRPair says of its pod.
PODS = [
    ("a", "shop", {"app": "cart", "tier": "web"}),
    ("b", "shop", {"app": "cart", "tier": "db"}),
    ("c", "shop", {"app": "pay"}),
    ("d", "web", {"app": "cart", "tier": "web", "canary": "1"}),
]


def _pairs(port: int = 8080) -> list[pb.RRPair]:
    out = []
    for i, (pid, ns, labels) in enumerate(PODS):
        p = pb.RRPair(id=pid, l7protocol="http", direction=pb.INBOUND, duration_us=100)
        p.ts.FromNanoseconds(time.time_ns() - 10_000_000 + i * 1_000_000)
        p.meta.namespace, p.meta.pod = ns, f"{pid}-pod"
        p.meta.labels.update(labels)
        p.server.ip, p.server.port = "127.0.0.1", port
        p.client.ip, p.client.port = "127.0.0.1", 40000 + i
        p.http.req.method, p.http.req.url, p.http.req.version = "GET", f"/{pid}.txt", "HTTP/1.1"
        p.http.res.status_code, p.http.res.version = 200, "HTTP/1.1"
        p.http.res.body = f"{pid}\n".encode()
        p.http.res.body_size = 2
        out.append(p)
    return out


def _write(path: Path, pairs: list[pb.RRPair]) -> Path:
    with path.open("w") as f:
        for p in pairs:
            jsonl.write(f, p)
    return path


def nodetap(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True, timeout=90
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _ids(text: str) -> list[str]:
    return [jsonl.loads(line).id for line in text.splitlines()]


@pytest.mark.parametrize(
    ("selector", "ids"),
    [
        ("app=cart", ["a", "b", "d"]),
        ("app==cart,tier=web", ["a", "d"]),
        ("app=cart,tier!=db", ["a", "d"]),
        ("canary", ["d"]),
        ("!tier", ["c"]),
        ("app!=cart", ["c"]),
    ],
)
def test_label_selector_matches_as_kubectl(selector: str, ids: list[str]) -> None:
    flt = parse_filters([f"label={selector}"])
    assert [p.id for p in _pairs() if matches(flt, p)] == ids


def test_set_based_selectors_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="set-based in/notin is not supported"):
        label_requirements("env in (a,b)")
    r = nodetap("export", "-r", "/dev/null", "-l", "=x", check=False)
    assert r.returncode == 2 and "bad label selector" in r.stderr


def test_export_from_a_file_by_namespace_and_labels(tmp_path: Path) -> None:
    cap = _write(tmp_path / "c.jsonl", _pairs())
    assert _ids(nodetap("export", "-r", str(cap), "-n", "shop", "-l", "app=cart").stdout) == [
        "a",
        "b",
    ]


@pytest.fixture
def forwarder(tmp_path: Path) -> Iterator[str]:
    """A real `nodetap forwarder` process on loopback."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "forwarder", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "store")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ingest(addr: str, pairs: list[pb.RRPair]) -> None:
    from forwarder import client
    from nodetap import transport
    from nodetap.v1 import forwarder_pb2 as fpb

    ch = transport.channel(addr)
    try:
        batch = fpb.IngestBatch(agent_id="t", seq=1, pairs=pairs)
        acks = list(client.stub(ch).Ingest(iter([batch]), timeout=30))
    finally:
        ch.close()
    assert acks[0].stored == len(pairs)


def test_stored_selection_snapshot_and_replay_by_name(forwarder: str, tmp_path: Path) -> None:
    files = {f"{pid}.txt": f"{pid}\n".encode() for pid, _, _ in PODS}
    with nginx(files=files) as web:
        _ingest(forwarder, _pairs(web.port))
        fwd = ["--forwarder", forwarder]
        # export of what is stored, selected by the forwarder
        assert _ids(nodetap("export", *fwd, "-l", "tier=web").stdout) == ["a", "d"]
        assert _ids(nodetap("export", *fwd, "-n", "web", "-n", "shop", "-l", "!tier").stdout) == [
            "c"
        ]
        # a snapshot of a selection, addressed by its name
        nodetap("snapshot", "create", *fwd, "--name", "carts", "-n", "shop", "-l", "app=cart")
        assert _ids(nodetap("export", *fwd, "--snapshot", "carts").stdout) == ["a", "b"]
        assert nodetap("snapshot", "list", *fwd, "-o", "name").stdout.startswith("snap-")
        # replay of that snapshot by name, narrowed again by -l: nginx sees /a.txt only
        r = nodetap(
            "replay", "--snapshot", "carts", *fwd, "-l", "tier=web",
            "--target", web.url, "--no-progress", "-o", "json",
        )  # fmt: skip
        assert '"sent": 1' in r.stdout, r.stdout
        assert [line.split('"')[1] for line in web.access_log_lines()] == ["GET /a.txt HTTP/1.1"]


def test_replay_of_a_file_by_namespace_and_labels(tmp_path: Path) -> None:
    files = {f"{pid}.txt": f"{pid}\n".encode() for pid, _, _ in PODS}
    with nginx(files=files) as web:
        cap = _write(tmp_path / "c.jsonl", _pairs(web.port))
        r = nodetap(
            "replay", "-r", str(cap), "-n", "shop", "-l", "app=cart",
            "--target", web.url, "--no-progress", "--vusers", "1",
        )  # fmt: skip
        assert "2 selected RRPairs" in r.stderr
        got = sorted(line.split('"')[1] for line in web.access_log_lines())
        assert got == ["GET /a.txt HTTP/1.1", "GET /b.txt HTTP/1.1"]
        r = nodetap("replay", str(cap), "-l", "app=nope", "--target", web.url, check=False)
        assert r.returncode == 2 and "no RRPair of" in r.stderr


def test_live_tail_by_labels(forwarder: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "export", "--forwarder", forwarder, "--follow",
         "-l", "canary", "-c", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "following live RRPairs" in line, line
        _ingest(forwarder, _pairs())
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert _ids(out) == ["d"]
