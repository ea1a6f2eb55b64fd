//! Connection-level tests of the HTTP/2 decoder on frames built here (real peers are in
//! tests/core/test_h2_peers.py).
use super::conn::{H2Conn, Limits, Stream, CLIENT, SERVER};
use super::frames::*;
use super::rrpair;
use crate::pb;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend(stream.to_be_bytes());
    v.extend(payload);
    v
}

struct Peer {
    enc: loona_hpack::Encoder<'static>,
}

impl Peer {
    fn new() -> Self {
        Self {
            enc: loona_hpack::Encoder::new(),
        }
    }
    fn block(&mut self, hs: &[(&str, &str)]) -> Vec<u8> {
        self.enc
            .encode(hs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }
    fn headers(&mut self, stream: u32, flags: u8, hs: &[(&str, &str)]) -> Vec<u8> {
        let b = self.block(hs);
        frame(HEADERS, flags | END_HEADERS, stream, &b)
    }
}

fn grpc_msg(m: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend((m.len() as u32).to_be_bytes());
    v.extend(m);
    v
}

fn run(client: &[u8], server: &[u8], limits: Limits) -> (Vec<Stream>, H2Conn) {
    let mut c = H2Conn::new(limits, true, true);
    let mut out = Vec::new();
    // byte by byte for the first frames, then in big pieces
    for (i, b) in client.iter().enumerate().take(64) {
        c.feed(CLIENT, &[*b], i as u64 + 1, &mut out);
    }
    if client.len() > 64 {
        c.feed(CLIENT, &client[64..], 100, &mut out);
    }
    c.feed(SERVER, server, 200, &mut out);
    c.close(&mut out);
    (out, c)
}

fn req_get(p: &mut Peer, id: u32) -> Vec<u8> {
    p.headers(
        id,
        END_STREAM,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", "/index.html"),
            ("user-agent", "test"),
        ],
    )
}

#[test]
fn a_get_with_continuation_padding_priority_and_trailers() {
    let (mut cp, mut sp) = (Peer::new(), Peer::new());
    let mut client = PREFACE.to_vec();
    client.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
    // HEADERS with PADDED|PRIORITY, then CONTINUATION
    let block = cp.block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/upload"),
        ("x-a", "1"),
    ]);
    let mut hp = vec![3, 0, 0, 0, 0, 16];
    hp.extend(&block[..4]);
    hp.extend([0, 0, 0]);
    client.extend(frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &hp));
    client.extend(frame(CONTINUATION, END_HEADERS, 1, &block[4..]));
    client.extend(frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 5]));
    client.extend(frame(DATA, PADDED, 1, &[2, b'a', b'b', 0, 0]));
    client.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    client.extend(frame(DATA, END_STREAM, 1, b"cd"));
    let mut server = frame(SETTINGS, 0, 0, &[]);
    server.extend(frame(SETTINGS, 1, 0, &[]));
    server.extend(sp.headers(1, 0, &[(":status", "100")]));
    server.extend(sp.headers(1, 0, &[(":status", "200"), ("content-type", "text/plain")]));
    server.extend(frame(DATA, 0, 1, b"ok"));
    server.extend(frame(PING, 0, 0, &[0; 8]));
    server.extend(sp.headers(1, END_STREAM, &[("x-trailer", "t")]));
    let (out, _) = run(&client, &server, Limits::new(1 << 20));
    assert_eq!(out.len(), 1);
    let st = &out[0];
    assert!(st.flags.is_empty(), "{:?}", st.flags);
    assert_eq!(st.req.body, b"abcd");
    assert_eq!(st.req.header(":path"), Some("/upload"));
    assert_eq!(st.req.headers[4], ("x-a".into(), "1".into()));
    assert_eq!(st.res.header(":status"), Some("200"));
    assert_eq!(st.res.body, b"ok");
    assert_eq!(st.res.trailers, vec![("x-trailer".into(), "t".into())]);
    let pair = rrpair::build(&pb::RrPair::default(), st.clone(), "x-1".into(), 1 << 20);
    assert_eq!(pair.l7protocol, "http2");
    let http = pair.http.unwrap();
    assert_eq!(http.req.as_ref().unwrap().method, "POST");
    assert_eq!(http.res.as_ref().unwrap().status_code, 200);
}

#[test]
fn many_streams_multiplexed_and_table_reuse() {
    let (mut cp, mut sp) = (Peer::new(), Peer::new());
    let mut client = PREFACE.to_vec();
    let mut server = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        client.extend(req_get(&mut cp, id));
        server.extend(sp.headers(id, 0, &[(":status", "200"), ("server", "t")]));
    }
    for i in (0..1000u32).rev() {
        server.extend(frame(
            DATA,
            END_STREAM,
            2 * i + 1,
            format!("{i}").as_bytes(),
        ));
    }
    let (out, c) = run(&client, &server, Limits::new(1 << 20));
    assert_eq!(out.len(), 1000);
    assert!(c.tables_trusted());
    for st in &out {
        assert!(st.flags.is_empty());
        assert_eq!(st.res.body, format!("{}", (st.id - 1) / 2).as_bytes());
        assert_eq!(st.req.header(":path"), Some("/index.html"));
    }
}

#[test]
fn grpc_calls_reset_and_trailers_only() {
    let (mut cp, mut sp) = (Peer::new(), Peer::new());
    let req = |p: &mut Peer, id, m| {
        p.headers(
            id,
            0,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", m),
                (":authority", "x"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
    };
    let mut client = PREFACE.to_vec();
    client.extend(req(&mut cp, 1, "/pkg.Svc/Stream"));
    client.extend(frame(DATA, 0, 1, &grpc_msg(b"a")));
    let mut two = grpc_msg(b"bb");
    two.extend(grpc_msg(b""));
    client.extend(frame(DATA, END_STREAM, 1, &two));
    client.extend(req(&mut cp, 3, "/pkg.Svc/Fail"));
    client.extend(frame(DATA, END_STREAM, 3, &grpc_msg(b"q")));
    client.extend(req(&mut cp, 5, "/pkg.Svc/Slow"));
    client.extend(frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]));
    let mut server = sp.headers(
        1,
        0,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    let mut body = grpc_msg(b"r1");
    body.extend(grpc_msg(b"r2"));
    server.extend(frame(DATA, 0, 1, &body[..3]));
    server.extend(frame(DATA, 0, 1, &body[3..]));
    server.extend(sp.headers(1, END_STREAM, &[("grpc-status", "0")]));
    server.extend(sp.headers(
        3,
        END_STREAM,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "not%20found"),
        ],
    ));
    let (out, _) = run(&client, &server, Limits::new(1 << 20));
    let pairs: Vec<pb::RrPair> = out
        .into_iter()
        .map(|s| rrpair::build(&pb::RrPair::default(), s, "i".into(), 1 << 20))
        .collect();
    assert_eq!(pairs.len(), 3);
    let by = |m: &str| {
        pairs
            .iter()
            .find(|p| p.grpc.as_ref().unwrap().method == m)
            .unwrap()
    };
    let s = by("Stream");
    assert_eq!(s.l7protocol, "grpc");
    let g = s.grpc.as_ref().unwrap();
    assert_eq!(g.service, "pkg.Svc");
    assert_eq!(
        g.request_messages,
        vec![b"a".to_vec(), b"bb".to_vec(), vec![]]
    );
    assert_eq!(g.response_messages, vec![b"r1".to_vec(), b"r2".to_vec()]);
    assert_eq!(g.status, 0);
    assert!(s.flags.is_empty(), "{:?}", s.flags);
    let f = by("Fail").grpc.as_ref().unwrap();
    assert_eq!((f.status, f.status_message.as_str()), (5, "not found"));
    let slow = by("Slow");
    assert_eq!(slow.grpc.as_ref().unwrap().status, 1);
    assert!(slow.flags.contains(&"reset".to_string()));
}

#[test]
fn endless_continuation_and_bombs_are_bounded() {
    let mut cp = Peer::new();
    let mut client = PREFACE.to_vec();
    client.extend(frame(HEADERS, 0, 1, &cp.block(&[(":method", "GET")])));
    for _ in 0..100 {
        client.extend(frame(CONTINUATION, 0, 1, &[0x40; 16384]));
    }
    client.extend(frame(CONTINUATION, END_HEADERS, 1, &[]));
    client.extend(req_get(&mut cp, 3));
    let mut c = H2Conn::new(Limits::new(1 << 20), true, true);
    let mut out = Vec::new();
    c.feed(CLIENT, &client, 1, &mut out);
    assert!(!c.failed);
    assert_eq!(c.counts.get("h2_header_blocks_too_large"), Some(&1));
    c.close(&mut out);
    assert_eq!(out.len(), 2);
    assert!(out[0].flags.contains("header_block_too_large"));
    // the table became unknown: stream 3's block referenced entries we lost
    assert!(!c.tables_trusted());
}

#[test]
fn streams_never_closed_are_bounded() {
    let mut cp = Peer::new();
    let mut client = PREFACE.to_vec();
    for i in 0..3000u32 {
        client.extend(cp.headers(2 * i + 1, 0, &[(":method", "POST"), (":path", "/")]));
        client.extend(frame(DATA, 0, 2 * i + 1, &[1; 1000]));
    }
    let mut limits = Limits::new(1 << 20);
    limits.max_held = 100_000;
    let mut c = H2Conn::new(limits, true, true);
    let mut out = Vec::new();
    c.feed(CLIENT, &client, 1, &mut out);
    assert_eq!(c.counts.get("h2_streams"), Some(&1024));
    assert_eq!(c.counts.get("h2_streams_dropped"), Some(&(3000 - 1024)));
    c.close(&mut out);
    assert_eq!(out.len(), 1024);
    let held: usize = out.iter().map(|s| s.req.body.len()).sum();
    assert!(held <= 100_000);
}

#[test]
fn malformed_frames_fail_the_connection_without_panic() {
    let mut cp = Peer::new();
    let mut client = PREFACE.to_vec();
    client.extend(req_get(&mut cp, 1));
    client.extend(frame(DATA, PADDED, 1, &[200, 1, 2]));
    let mut c = H2Conn::new(Limits::new(1 << 20), true, true);
    let mut out = Vec::new();
    c.feed(CLIENT, &client, 1, &mut out);
    assert!(c.failed);
    assert_eq!(out.len(), 1);
    assert!(out[0].flags.contains("h2_bad_padding"));
    // a frame between HEADERS and its CONTINUATION
    let mut client = PREFACE.to_vec();
    client.extend(frame(HEADERS, 0, 1, &[0x82]));
    client.extend(frame(PING, 0, 0, &[0; 8]));
    let mut c = H2Conn::new(Limits::new(1 << 20), true, true);
    c.feed(CLIENT, &client, 1, &mut out);
    assert!(c.failed);
}

#[test]
fn joined_mid_way_then_trusted_again() {
    let (mut cp, mut sp) = (Peer::new(), Peer::new());
    // frames before the capture started: the tables learned entries we never see
    let _ = req_get(&mut cp, 1);
    let _ = sp.headers(1, 0, &[(":status", "200"), ("x-big", &"v".repeat(50))]);
    let mut client = req_get(&mut cp, 3);
    let server = sp.headers(
        3,
        END_STREAM,
        &[(":status", "200"), ("x-big", &"v".repeat(50))],
    );
    client.extend(frame(DATA, 0, 3, b""));
    let mut c = H2Conn::new(Limits::new(1 << 20), false, false);
    let mut out = Vec::new();
    c.feed(CLIENT, &client, 1, &mut out);
    c.feed(SERVER, &server, 2, &mut out);
    c.close(&mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].flags.contains("hpack_unknown_entry"));
    assert_eq!(out[0].res.header(":status"), Some("200"));
}

#[test]
fn a_gap_in_data_keeps_the_connection() {
    let (mut cp, mut sp) = (Peer::new(), Peer::new());
    let mut client = PREFACE.to_vec();
    client.extend(req_get(&mut cp, 1));
    client.extend(req_get(&mut cp, 3));
    let mut server = sp.headers(1, 0, &[(":status", "200")]);
    let data = frame(DATA, END_STREAM, 1, &[7; 1000]);
    let after = sp.headers(3, END_STREAM, &[(":status", "404")]);
    let mut c = H2Conn::new(Limits::new(1 << 20), true, true);
    let mut out = Vec::new();
    c.feed(CLIENT, &client, 1, &mut out);
    server.extend(&data[..100]);
    c.feed(SERVER, &server, 2, &mut out);
    c.gap(SERVER, 800, 3);
    let mut rest = data[900..].to_vec();
    rest.extend(after);
    c.feed(SERVER, &rest, 4, &mut out);
    c.close(&mut out);
    assert_eq!(out.len(), 2);
    let s3 = out.iter().find(|s| s.id == 3).unwrap();
    assert_eq!(s3.res.header(":status"), Some("404"));
    assert!(s3.flags.is_empty());
    assert!(out
        .iter()
        .find(|s| s.id == 1)
        .unwrap()
        .flags
        .contains("gap"));
}

#[test]
fn the_server_speaking_first_is_still_the_start() {
    let (mut cp, mut sp) = (Peer::new(), Peer::new());
    let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let first = super::detect(&settings, false, 1 << 20).expect("frames");
    let mut c = *first;
    let mut out = Vec::new();
    c.feed(SERVER, &settings, 1, &mut out);
    let mut client = PREFACE.to_vec();
    client.extend(req_get(&mut cp, 1));
    c.feed(CLIENT, &client, 2, &mut out);
    c.feed(
        SERVER,
        &sp.headers(1, END_STREAM, &[(":status", "204")]),
        3,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].flags.is_empty(), "{:?}", out[0].flags);
    assert!(c.tables_trusted());
}
