"""One meaning of each flag (issue 25): `-o FORMAT` as kubectl, `-w FILE` / `-r FILE` as
tcpdump, in every subcommand. `export -o json` used to write a file named `json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def nodetap(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _capture(path: Path, n: int = 3) -> Path:
    with path.open("w") as f:
        for i in range(n):
            p = pb.RRPair(id=f"p{i}", l7protocol="http", direction=pb.INBOUND)
            p.ts.FromNanoseconds(1_795_000_000_000_000_000 + i)
            p.client.ip, p.client.port = "127.0.0.1", 40000 + i
            p.server.ip, p.server.port = "127.0.0.1", 8080
            p.http.req.method, p.http.req.url, p.http.req.version = "GET", f"/x/{i}", "HTTP/1.1"
            p.http.res.status_code, p.http.res.version = 200, "HTTP/1.1"
            jsonl.write(f, p)
    return path


def test_export_o_json_is_a_format_not_a_file(tmp_path: Path) -> None:
    cap = _capture(tmp_path / "c.jsonl")
    r = nodetap("export", "-r", str(cap), "-o", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "json").exists()
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == ["p0", "p1", "p2"]


def test_export_w_file_takes_the_format_of_its_suffix(tmp_path: Path) -> None:
    cap = _capture(tmp_path / "c.jsonl")
    r = nodetap("export", "-r", str(cap), "-w", str(tmp_path / "c.har"))
    assert r.returncode == 0, r.stderr
    har = json.loads((tmp_path / "c.har").read_text())
    assert len(har["log"]["entries"]) == 3
    r = nodetap("export", "-r", str(cap), "-o", "pcap", "-w", str(tmp_path / "c.bin"))
    assert r.returncode == 0, r.stderr
    shark = subprocess.run(
        ["tshark", "-r", str(tmp_path / "c.bin"), "-Y", "http.request"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert len(shark.stdout.splitlines()) == 3


def test_old_o_file_still_writes_with_a_warning_on_a_terminal(tmp_path: Path) -> None:
    from tests.cli.test_progress import _run

    cap = _capture(tmp_path / "c.jsonl")
    r = nodetap("export", "--input", str(cap), "-o", str(tmp_path / "old.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr  # scripts read the same lines as before
    assert len((tmp_path / "old.jsonl").read_text().splitlines()) == 3
    rc, err = _run(["export", "--input", str(cap), "-o", str(tmp_path / "old2.jsonl")], True)
    assert rc == 0 and b"names a format" in err and b"-w " in err, err
    assert len((tmp_path / "old2.jsonl").read_text().splitlines()) == 3


def test_o_with_no_format_is_a_usage_error(tmp_path: Path) -> None:
    cap = _capture(tmp_path / "c.jsonl")
    r = nodetap("export", "-r", str(cap), "-o", "xml", cwd=tmp_path)
    assert r.returncode == 2
    assert (
        "invalid choice, not a format; use one of jsonl, har, pcap; write a file with -w xml"
        in r.stderr
    )
    assert not (tmp_path / "xml").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["capture", "-o", "table"], {"format": "table", "write": "-"}),
        (["capture", "-o", "wide", "-w", "t.txt"], {"format": "wide", "write": "t.txt"}),
        (["capture", "-o", "json"], {"format": "jsonl"}),
        (["capture", "--format", "table"], {"format": "table"}),
        (["import", "-r", "x.pcap", "-w", "x.jsonl"], {"read": "x.pcap", "write": "x.jsonl"}),
        (["export", "-r", "x.jsonl", "-c", "5"], {"input": "x.jsonl", "limit": 5}),
        (["status", "-o", "yaml"], {"format": "yaml"}),
        (["rules", "check", "r.yaml", "-o", "json"], {"format": "json"}),
        (["rules", "check", "r.yaml", "--json"], {"format": "json"}),
        (["snapshot", "list", "--forwarder", "f:1", "-o", "name"], {"format": "name"}),
        (["snapshot", "list", "--forwarder", "f:1", "--json"], {"format": "json"}),
        (
            ["snapshot", "export", "s", "--forwarder", "f:1", "-o", "har", "-w", "s.har"],
            {"format": "har", "write": "s.har"},
        ),
        (
            ["replay", "-r", "c.jsonl", "--target", "http://h:1", "-o", "json"],
            {"read": "c.jsonl", "format": "json"},
        ),
        (
            ["replay", "c.jsonl", "--target", "http://h:1", "--duration", "1m", "--timeout", "2s"],
            {"duration": 60.0, "timeout": 2.0},
        ),
        (
            ["replay", "c.jsonl", "--target", "http://h:1", "-n", "a", "-l", "app=web"],
            {"namespaces": ["a"], "selectors": ["app=web"]},
        ),
    ],
)
def test_flags_mean_the_same_everywhere(argv: list[str], expected: dict[str, object]) -> None:
    args = build_parser(argv).parse_args(argv)
    assert {k: getattr(args, k) for k in expected} == expected


def test_status_yaml_and_json_of_a_document() -> None:
    from cli.options.output import dump_structured

    doc = {"pods": [{"name": "a", "captured": True}], "node": "n"}
    assert yaml.safe_load(dump_structured(doc, "yaml")) == doc
    assert json.loads(dump_structured(doc, "json")) == doc


def test_import_reads_r_and_writes_w(tmp_path: Path) -> None:
    """tcpdump -r/-w habits on import, against a pcap tcpdump's own format writer made
    (the export's pcap of three exchanges)."""
    cap = _capture(tmp_path / "c.jsonl")
    assert nodetap("export", "-r", str(cap), "-w", str(tmp_path / "c.pcap")).returncode == 0
    r = nodetap("import", "-r", str(tmp_path / "c.pcap"), "-w", str(tmp_path / "back.jsonl"))
    assert r.returncode == 0, r.stderr
    urls = [p.http.req.url for p in jsonl.read_path(str(tmp_path / "back.jsonl"))]
    assert sorted(urls) == ["/x/0", "/x/1", "/x/2"]
