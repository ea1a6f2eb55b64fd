//! The decoder with edge rules (`set_rules`): each RRPair dropped or redacted before it is
//! encoded; the live tests with real peers are tests/core/test_rules_live.py.
use std::sync::Arc;

use prost::Message as _;

use super::{Decoder, Formats};
use crate::{layout, pb, rules};

fn ring(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 16);
    v.extend((payload.len() as u32).to_le_bytes());
    v.extend(0u32.to_le_bytes());
    v.extend(payload);
    v.resize(v.len().div_ceil(8) * 8, 0);
    v
}

fn open(conn_id: u64) -> Vec<u8> {
    let mut r = vec![0u8; layout::NT_CONN_EVENT_SIZE];
    r[0] = layout::NT_EV_OPEN;
    r[1] = layout::NT_ROLE_SERVER;
    r[8..16].copy_from_slice(&conn_id.to_le_bytes());
    ring(&r)
}

fn data(conn_id: u64, dir: u8, off: u64, ts: u64, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; layout::NT_DATA_HDR_SIZE];
    r[0] = layout::NT_EV_DATA;
    r[1] = dir;
    r[4..8].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    r[8..16].copy_from_slice(&conn_id.to_le_bytes());
    r[16..24].copy_from_slice(&ts.to_le_bytes());
    r[24..32].copy_from_slice(&off.to_le_bytes());
    r.extend(bytes);
    ring(&r)
}

/// Two exchanges on one server connection: GET /gone, then GET /kept with a cookie.
fn batch() -> Vec<u8> {
    let reqs: [&[u8]; 2] = [
        b"GET /gone HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /kept HTTP/1.1\r\nHost: a\r\nCookie: sid=s3cr3t\r\n\r\n",
    ];
    let res: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut b = open(7);
    let (mut off_in, mut off_out) = (0, 0);
    for (i, req) in reqs.iter().enumerate() {
        let ts = 10 * (i as u64 + 1);
        b.extend(data(7, layout::NT_DIR_INGRESS, off_in, ts, req));
        b.extend(data(7, layout::NT_DIR_EGRESS, off_out, ts + 1, res));
        off_in += req.len() as u64;
        off_out += res.len() as u64;
    }
    b
}

const RULES: &str = r#"{"builtin": [], "drop": [{"name": "gone", "match": {"path": "^/gone"}}],
  "sample": [], "redact": {"headers": ["Cookie"], "json_fields": [], "patterns": [],
  "custom": [], "hash_key": null}}"#;

fn decode(rules: Option<Arc<rules::Rules>>) -> (Vec<pb::RrPair>, Vec<String>) {
    let mut dec = Decoder::new(
        1024,
        0,
        "t".into(),
        Formats {
            protobuf: true,
            jsonl: true,
        },
    );
    dec.set_rules(rules);
    dec.feed_records(&batch());
    dec.close_all(100);
    let pairs = dec
        .out_pb
        .iter()
        .map(|b| pb::RrPair::decode(b.as_slice()).unwrap())
        .collect();
    let lines = dec
        .out_jsonl
        .iter()
        .map(|b| String::from_utf8(b.clone()).unwrap())
        .collect();
    (pairs, lines)
}

#[test]
fn rules_drop_and_redact_before_encoding() {
    let (plain, _) = decode(None);
    assert_eq!(plain.len(), 2);
    let r = Arc::new(rules::Rules::from_json(RULES, b"key").unwrap());
    let (pairs, lines) = decode(Some(Arc::clone(&r)));
    assert_eq!(pairs.len(), 1, "the drop rule's RRPair is not encoded");
    assert_eq!(lines.len(), 1);
    let req = pairs[0].http.as_ref().unwrap().req.as_ref().unwrap();
    assert_eq!(req.url, "/kept");
    let cookie = &req
        .headers
        .iter()
        .find(|h| h.name == "Cookie")
        .unwrap()
        .value;
    assert_ne!(cookie, "sid=s3cr3t");
    assert_eq!(cookie.len(), "sid=s3cr3t".len());
    assert!(pairs[0].flags.iter().any(|f| f == "redacted"));
    assert!(!lines[0].contains("s3cr3t"), "{}", lines[0]);
    // the same bytes as the rules applied to the plain RRPair afterwards
    let mut after = plain[1].clone();
    let alone = rules::Rules::from_json(RULES, b"key").unwrap();
    assert_eq!(alone.apply(&mut after), rules::Verdict::Keep);
    assert_eq!(after, pairs[0]);
    let counts: Vec<u64> = r.counters().into_iter().map(|(_, v)| v).collect();
    assert_eq!(counts, vec![1, 1, 0, 1]);
}
