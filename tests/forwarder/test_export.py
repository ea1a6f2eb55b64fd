"""Exports: HAR 1.2 validated against the format's structure and read by a HAR tool
(haralyzer); JSONL round trip; offline conversion (--input); pcap when available."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
from haralyzer import HarEntry, HarParser

from nodetap import jsonl
from tests.forwarder.helpers import ROOT
from tests.forwarder.traffic import Req, exchange_pairs
from tests.support.servers import nginx, python_server_thread

# The HAR 1.2 structure (http://www.softwareishard.com/blog/har-12-spec/): required fields and
# their types, for log, creator, entries, request, response, content, cookies, headers,
# queryString, postData, cache and timings.
ISO_8601 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
_NV = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
    },
}
HAR_SCHEMA = {
    "type": "object",
    "required": ["log"],
    "properties": {
        "log": {
            "type": "object",
            "required": ["version", "creator", "entries"],
            "properties": {
                "version": {"type": "string", "const": "1.2"},
                "creator": {
                    "type": "object",
                    "required": ["name", "version"],
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                },
                "pages": {"type": "array"},
                "entries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "startedDateTime",
                            "time",
                            "request",
                            "response",
                            "cache",
                            "timings",
                        ],
                        "properties": {
                            "startedDateTime": {
                                "type": "string",
                                "pattern": ISO_8601,
                            },
                            "time": {"type": "number", "minimum": 0},
                            "request": {
                                "type": "object",
                                "required": [
                                    "method",
                                    "url",
                                    "httpVersion",
                                    "cookies",
                                    "headers",
                                    "queryString",
                                    "headersSize",
                                    "bodySize",
                                ],
                                "properties": {
                                    "method": {"type": "string"},
                                    "url": {"type": "string", "pattern": "^https?://"},
                                    "httpVersion": {"type": "string"},
                                    "cookies": _NV,
                                    "headers": _NV,
                                    "queryString": _NV,
                                    "postData": {
                                        "type": "object",
                                        "required": ["mimeType"],
                                        "properties": {
                                            "mimeType": {"type": "string"},
                                            "text": {"type": "string"},
                                        },
                                    },
                                    "headersSize": {"type": "integer"},
                                    "bodySize": {"type": "integer"},
                                },
                            },
                            "response": {
                                "type": "object",
                                "required": [
                                    "status",
                                    "statusText",
                                    "httpVersion",
                                    "cookies",
                                    "headers",
                                    "content",
                                    "redirectURL",
                                    "headersSize",
                                    "bodySize",
                                ],
                                "properties": {
                                    "status": {"type": "integer"},
                                    "statusText": {"type": "string"},
                                    "httpVersion": {"type": "string"},
                                    "cookies": _NV,
                                    "headers": _NV,
                                    "content": {
                                        "type": "object",
                                        "required": ["size", "mimeType"],
                                        "properties": {
                                            "size": {"type": "integer"},
                                            "mimeType": {"type": "string"},
                                            "text": {"type": "string"},
                                            "encoding": {"type": "string"},
                                        },
                                    },
                                    "redirectURL": {"type": "string"},
                                    "headersSize": {"type": "integer"},
                                    "bodySize": {"type": "integer"},
                                },
                            },
                            "cache": {"type": "object"},
                            "timings": {
                                "type": "object",
                                "required": ["send", "wait", "receive"],
                                "properties": {
                                    k: {"type": "number", "minimum": -1}
                                    for k in (
                                        "blocked",
                                        "dns",
                                        "connect",
                                        "send",
                                        "wait",
                                        "receive",
                                        "ssl",
                                    )
                                },
                            },
                            "serverIPAddress": {"type": "string"},
                            "connection": {"type": "string"},
                            "comment": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def _capture(tmp_path: Path) -> Path:
    path = tmp_path / "capture.jsonl"
    with path.open("w") as fp:
        with nginx() as web:
            for p in exchange_pairs(
                web.port,
                [
                    Req("GET", "/hello?a=1&b=two", [("Cookie", "k=v; theme=dark")]),
                    Req("GET", "/status/204"),
                    Req("POST", "/echo", [("Content-Type", "application/json")], b'{"x": 1}'),
                ],
            ):
                jsonl.write(fp, p)
        with python_server_thread() as srv:
            for p in exchange_pairs(srv.port, [Req("GET", "/bytes/300")]):
                jsonl.write(fp, p)
    return path


def _nodetap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )


def test_har_export_is_valid_har_12_and_readable(tmp_path: Path) -> None:
    capture = _capture(tmp_path)
    har_path = tmp_path / "out.har"
    _nodetap("export", "--input", str(capture), "--format", "har", "-o", str(har_path))
    doc = json.loads(har_path.read_text())
    jsonschema.validate(doc, HAR_SCHEMA)
    entries = doc["log"]["entries"]
    assert len(entries) == 4
    hello, nocontent, post, binary = entries
    assert hello["request"]["url"].endswith("/hello?a=1&b=two")
    assert hello["request"]["queryString"] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": "two"},
    ]
    assert hello["request"]["cookies"] == [
        {"name": "k", "value": "v"},
        {"name": "theme", "value": "dark"},
    ]
    assert hello["response"]["content"]["text"] == "hello world\n"
    assert nocontent["response"]["status"] == 204
    assert post["request"]["postData"] == {"mimeType": "application/json", "text": '{"x": 1}'}
    assert binary["response"]["content"]["encoding"] == "base64"
    assert base64.b64decode(binary["response"]["content"]["text"]) == bytes(
        i % 251 for i in range(300)
    )
    # A HAR reader (haralyzer) takes the file.
    parser = HarParser(doc)
    assert parser.version == "1.2" and parser.creator["name"] == "nodetap"
    read = [HarEntry(e) for e in entries]
    assert [e.request.method for e in read] == ["GET", "GET", "POST", "GET"]
    assert [e.response.status for e in read] == [200, 204, 200, 200]
    assert read[0].response.text == "hello world\n"
    assert read[0].startTime is not None


def test_jsonl_roundtrip_and_filters_offline(tmp_path: Path) -> None:
    capture = _capture(tmp_path)
    out = _nodetap(
        "export", "--input", str(capture), "--filter", "method=GET", "--filter", "status=200-299"
    ).stdout
    original = [p for p in jsonl.read_path(str(capture))]
    got = [jsonl.loads(line) for line in out.splitlines()]
    assert [p.id for p in got] == [p.id for p in original if p.http.req.method == "GET"]
    assert got[0] == original[0]  # byte-for-byte the same RRPair


def test_pcap_export_when_available(tmp_path: Path) -> None:
    import importlib.util

    capture = _capture(tmp_path)
    dest = tmp_path / "out.pcap"
    if importlib.util.find_spec("agent.packet.pcap_export") is None:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "export",
                "--input",
                str(capture),
                "--format",
                "pcap",
                "-o",
                str(dest),
            ],
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=60,
        )
        assert r.returncode == 2 and "pcap export is not available" in r.stderr
        return
    _nodetap("export", "--input", str(capture), "--format", "pcap", "-o", str(dest))
    fields = subprocess.run(
        [
            "tshark",
            "-r",
            str(dest),
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "http.request.method",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert fields == ["GET", "GET", "POST", "GET"]


def test_export_follow_tails_live_pairs(tmp_path: Path) -> None:
    from agent.sinks.forwarder import ForwarderSink
    from tests.forwarder.helpers import forwarder_process, stop
    from tests.support.servers import free_port

    capture = _capture(tmp_path)
    port = free_port()
    with forwarder_process(port, tmp_path / "data"):
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "export",
                "--forwarder",
                f"127.0.0.1:{port}",
                "--follow",
                "--filter",
                "method=GET",
                "--limit",
                "3",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert tail.stderr is not None
            assert "following live RRPairs" in tail.stderr.readline()
            sink = ForwarderSink(f"127.0.0.1:{port}")
            for p in jsonl.read_path(str(capture)):
                sink.put(p)
            assert sink.flush(30)
            sink.close(1)
            out, _ = tail.communicate(timeout=60)
        finally:
            stop(tail)
    want = [p.id for p in jsonl.read_path(str(capture)) if p.http.req.method == "GET"]
    assert [jsonl.loads(x).id for x in out.splitlines()] == want
