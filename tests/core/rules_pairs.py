"""Generated RRPairs for the rules differential tests (secrets, JSON bodies with escapes and
deep nesting, Latin-1 and Unicode text, compressed bodies, metadata for every condition), and
the seeds of the core's `rules` fuzz target made of the same pieces."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from nodetap.v1 import rrpair_pb2 as pb

# -- RRPairs ----------------------------------------------------------------------------------
PIECES = [
    "bob@example.org",
    "a.b%40c.io",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "1234567812345678",
    "5500 0000 0000 0004 1",
    "Bearer abc.DEF-_~+/==",
    "bearer\tx",
    "BEARER\x0by",
    "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJl",
    "ORD-123456",
    "123-45-6789",
    "secret stuff",
    "SECRET\u00a0x",
    "/healthz",
    "/metrics",
    "/internal/42",
    "é",
    "€",
    "\u017f",
    "\u212a",
    "\x0b",
    "٣٣٣",
    " ",
    "-",
    "@",
    "%40",
    ".",
    "?",
    "eyJ",
    "abcdefghij",
    ".*",
    "&",
    "x{,3}",
    "a{start}",
]
TEXT = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(max_size=6), st.from_regex(r"[0-9 -]{0,24}")),
    max_size=6,
).map("".join)
LATIN1 = TEXT.map(lambda s: s.encode("latin-1", "replace").decode("latin-1"))

KEYS = ["password", "card", "number", "ssn", "user", "a", "b", "x", "pässword", "", 'p"w', "\ud83d"]
JSON_DOC = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(KEYS), kids, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def json_body(draw: st.DrawFn) -> bytes:
    doc = draw(JSON_DOC)
    text = json.dumps(
        doc,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 1])),
        separators=draw(st.sampled_from([None, (",", ":")])),
    )
    raw = text.encode("utf-8", "surrogatepass")
    cut = draw(st.sampled_from(["whole", "whole", "whole", "cut", "junk", "space"]))
    if cut == "cut" and raw:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif cut == "junk":
        raw += draw(st.sampled_from([b"x", b" ", b"\x0b", b"}"]))
    elif cut == "space":
        raw = draw(st.sampled_from([b" ", b"\n\t", b"\x0b"])) + raw
    return raw


BODY = st.one_of(
    st.just(b""),
    json_body(),
    TEXT.map(lambda s: s.encode("utf-8")),
    LATIN1.map(lambda s: s.encode("latin-1")),
    st.binary(max_size=40),
    # surrogates' 3-byte forms (RE2 matches them with negated classes), invalid UTF-8
    st.lists(
        st.sampled_from([b"q", b"\xed\xa0\xbd", b"a", b"1", b"\xff", b"\xc3\xa9", b"\xed\x9f\xbf"]),
        max_size=8,
    ).map(b"".join),
    st.integers(250, 300).map(lambda n: b"[" * n + b"1" + b"]" * n),
    st.integers(250, 300).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)

HEADER_VALUES = {
    "Host": st.sampled_from(
        ["admin.example.com:8080", "ADMIN.x", "bdmin.y", "[::1]:80", "a:b:c", ""]
    ),
    "User-Agent": st.sampled_from(["kube-probe/1.30", "Prometheus/2.5", "curl/8", ""]),
    "Content-Type": st.sampled_from(["application/json", "text/plain", "APPLICATION/JSON; x", ""]),
    "Content-Encoding": st.sampled_from(["gzip", "identity", " Identity ", "", "\x1c", "br"]),
}
NAMES = list(HEADER_VALUES) + [
    "Authorization",
    "authorization",
    "Cookie",
    "Set-Cookie",
    "Proxy-Authorization",
    "X-Api-Key",
    "X-Other",
    "Referer",
    "X-\u212aey",
]


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    out = []
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=5)):
        value = HEADER_VALUES.get(name, LATIN1 if draw(st.booleans()) else TEXT)
        out.append((name, draw(value)))
    return out


URL = st.one_of(
    TEXT.map(lambda s: "/" + s),
    st.tuples(TEXT, TEXT).map(lambda t: f"http://h{t[0]}/{t[1]}?q={t[0]}"),
    st.sampled_from(["/healthz", "/READYZ/", "/metrics", "/internal/12 x", "/a?x=/metrics", ""]),
)


@st.composite
def rrpairs(draw: st.DrawFn) -> pb.RRPair:
    p = pb.RRPair(id=draw(st.text(max_size=12)), l7protocol="http")
    if draw(st.booleans()):
        p.server.ip = draw(st.sampled_from(["10.0.0.1", "Admin.local", ""]))
        p.server.port = draw(st.sampled_from([80, 8080, 9090]))
    p.meta.namespace = draw(st.sampled_from(["kube-system", "default", "kube-public", ""]))
    p.meta.pod = draw(st.sampled_from(["batch-1", "batch-12", "web-0", ""]))
    p.meta.workload = draw(st.sampled_from(["Deployment/web", "Job/x", "Job/y", "Deployment/api"]))
    for k, v in draw(
        st.dictionaries(
            st.sampled_from(["track", "app"]),
            st.sampled_from(["canary-1", "stable", "debug-x"]),
            max_size=2,
        )
    ).items():
        p.meta.labels[k] = v
    p.flags.extend(draw(st.lists(st.sampled_from(["redacted", "gap"]), max_size=1)))
    shape = draw(st.sampled_from(["both", "both", "both", "req", "res", "none"]))
    if shape == "none":
        return p
    if shape in ("both", "req"):
        r = p.http.req
        r.method = draw(st.sampled_from(["GET", "delete", "DELETE", "POST", "ß", "ss"]))
        r.url = draw(URL)
        for k, v in draw(headers()):
            r.headers.add(name=k, value=v)
        for k, v in draw(headers()):
            r.trailers.add(name=k, value=v)
        r.body = draw(BODY)
        r.body_size = len(r.body)
    if shape in ("both", "res"):
        s = p.http.res
        s.status_code = 200
        for k, v in draw(headers()):
            s.headers.add(name=k, value=v)
        s.body = draw(BODY)
        s.body_size = len(s.body)
    return p


def fuzz_seeds() -> list[bytes]:
    """Seeds of the core's `rules` fuzz target (tests/core/fuzz_seeds.py writes them): URL,
    header value, request body and content type separated by 0xfd (core/src/rules/fuzz.rs)."""
    bodies = [
        json.dumps({"user": {"password": "hunter2", "ssn": "123-45-6789"}, "a": {"q": {"b": 1}}}),
        json.dumps([{"pässword": -12.5e3, "x": ["4111 1111 1111 1111"]}], ensure_ascii=False),
        '{"\\ud83d\\ude00": "\\u00e9", "p\\"w": "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.sig"}',
        "[" * 300 + "]" * 300,
    ]
    out = []
    for i, body in enumerate(bodies):
        piece = PIECES[(i * 7) % len(PIECES) :][:4]
        out.append(
            b"\xfd".join(
                [
                    ("/u?mail=" + "".join(piece)).encode(),
                    ("Bearer abc " + piece[0]).encode(),
                    body.encode("utf-8", "surrogatepass"),
                    b"application/json" if i % 2 else b"text/plain",
                ]
            )
        )
    return out
