//! The bodies of the fuzz targets (core/fuzz), shared with `cargo test`'s bounded
//! fuzz-style loop below, so that both exercise the same code.
#![forbid(unsafe_code)]

use crate::decoder::{Decoder, Formats};
use crate::layout;
use crate::stitch::Stitcher;

fn ring(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 16);
    v.extend((payload.len() as u32).to_le_bytes());
    v.extend(0u32.to_le_bytes());
    v.extend(payload);
    v.resize(v.len().div_ceil(8) * 8, 0);
    v
}

fn open(conn_id: u64, role: u8) -> Vec<u8> {
    let mut r = vec![0u8; layout::NT_CONN_EVENT_SIZE];
    r[0] = layout::NT_EV_OPEN;
    r[1] = role;
    r[8..16].copy_from_slice(&conn_id.to_le_bytes());
    ring(&r)
}

/// Raw bytes as a batch; then the same bytes as the payloads of DATA/GAP records of one
/// open connection (so that they reach the streams and the parser). The decoder must not
/// panic: a caught panic is a bug too.
pub fn records(data: &[u8]) {
    let mut dec = Decoder::new(
        1024,
        0,
        "f".into(),
        Formats {
            protobuf: true,
            jsonl: true,
        },
    );
    dec.feed_records(data);
    let mut batch = open(1, layout::NT_ROLE_SERVER);
    let mut off = [0u64; 2];
    let mut ts = 1u64;
    for piece in data.split(|&c| c == 0xfe) {
        let Some((&ctl, payload)) = piece.split_first() else {
            continue;
        };
        let dir = usize::from(ctl & 1);
        ts += u64::from(ctl >> 4);
        let mut r = vec![0u8; layout::NT_DATA_HDR_SIZE];
        let gap = ctl & 2 != 0;
        r[0] = if gap {
            layout::NT_EV_GAP
        } else {
            layout::NT_EV_DATA
        };
        r[1] = dir as u8;
        let len = if gap {
            u32::from(ctl >> 2)
        } else {
            payload.len() as u32
        };
        r[4..8].copy_from_slice(&len.to_le_bytes());
        r[8..16].copy_from_slice(&1u64.to_le_bytes());
        r[16..24].copy_from_slice(&ts.to_le_bytes());
        // bit 3: an offset out of order (reordering, overlaps, holes)
        let o = if ctl & 8 != 0 {
            off[dir].saturating_sub(u64::from(ctl))
        } else {
            off[dir]
        };
        r[24..32].copy_from_slice(&o.to_le_bytes());
        if !gap {
            r.extend(payload);
        }
        off[dir] = off[dir].max(o + u64::from(len));
        batch.extend(ring(&r));
        if ctl & 4 != 0 {
            dec.feed_records(&batch);
            batch.clear();
        }
    }
    dec.feed_records(&batch);
    dec.close_all(ts);
    assert_eq!(
        dec.counters.0.get("panics").copied(),
        Some(0),
        "a panic was caught"
    );
}

/// Bytes split at 0xff into pieces; each piece's first byte picks the direction (bit 0),
/// a gap instead of bytes (bit 1) and the timestamp step.
pub fn http1(data: &[u8]) {
    let mut st = Stitcher::new(64);
    let mut out = Vec::new();
    let mut ts = 1u64;
    for piece in data.split(|&c| c == 0xff) {
        let Some((&ctl, bytes)) = piece.split_first() else {
            continue;
        };
        ts += u64::from(ctl >> 4);
        match (ctl & 1, ctl & 2 != 0) {
            (0, false) => st.feed_request(bytes, ts, &mut out),
            (0, true) => st.request_gap(bytes.len() as u64, ts, &mut out),
            (_, false) => st.feed_response(bytes, ts, &mut out),
            (_, true) => st.response_gap(bytes.len() as u64, ts, &mut out),
        }
    }
    st.close(ts, &mut out);
    for ex in &out {
        for m in ex.request.iter().chain(ex.response.iter()) {
            assert!(m.body.len() <= 64, "a body beyond the limit");
            assert!(m.body_size >= m.body.len() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Seeds: the framing cases the Python differential tests use, as the fuzz targets read
    /// them (0xff / 0xfe separate pieces, the first byte of a piece steers).
    pub const SEEDS: &[&[u8]] = &[
        b"\x10GET /a HTTP/1.1\r\nHost: x\r\n\r\n\xff\x11HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"\x10POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n\xff\x11HTTP/1.1 204 No Content\r\n\r\n",
        b"\x10HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"\x10GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nGET / HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 101 S\r\n\r\n\xff\x10more",
        b"\x10GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nGET / HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"\x10GET / HTTP/1.0\r\n\r\n\xff\x11HTTP/1.0 200 OK\r\n\r\nbody\xff\x13gap\xff\x11tail",
        b"\x10CONNECT h:1 HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 200 OK\r\n\r\n\xff\x10tls",
        b"\x10GET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 B\r\n\r\n",
    ];

    /// A bounded fuzz-style loop: seeds mutated by a fixed xorshift sequence (no timing, the
    /// same inputs every run), through both targets' bodies.
    #[test]
    fn mutated_seeds_do_not_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let seed = SEEDS[(next() % SEEDS.len() as u64) as usize];
            let mut v = seed.to_vec();
            for _ in 0..(next() % 8) {
                let r = next();
                let at = (r >> 8) as usize % (v.len() + 1);
                match r % 4 {
                    0 if at < v.len() => v[at] = (r >> 32) as u8,
                    1 => v.insert(at, (r >> 40) as u8),
                    2 if at < v.len() => {
                        v.remove(at);
                    }
                    _ => {
                        let from = (r >> 20) as usize % (v.len() + 1);
                        let piece: Vec<u8> = v[from..].iter().take(16).copied().collect();
                        v.splice(at..at, piece);
                    }
                }
            }
            super::http1(&v);
            super::records(&v);
        }
    }
}
