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

/// HTTP/2 frames and HPACK: pieces of `[ctl, len_hi, len_lo, bytes...]`. ctl bit 0: the
/// side (1: server); bit 1: a gap of `len` bytes instead; bit 2 (first piece only): a
/// connection joined mid-way; bit 3: the bytes are one header block for a lone HPACK
/// decoder (a small table-size bound). No panic, bodies within the limit, tables bounded.
pub fn h2(data: &[u8]) {
    use crate::h2::conn::{H2Conn, Limits};
    use crate::h2::hpack::HpackDecoder;
    let joined = data.first().is_some_and(|c| c & 4 != 0);
    let mut limits = Limits::new(64);
    limits.max_streams = 16;
    limits.max_block = 4096;
    limits.max_list = 2048;
    limits.max_held = 1024;
    let mut c = H2Conn::new(limits, !joined, !joined);
    let mut hp = HpackDecoder::new(!joined, 1024);
    let mut out = Vec::new();
    let mut p = 0;
    let mut ts = 1;
    while p + 3 <= data.len() {
        let ctl = data[p];
        let n = usize::from(u16::from_be_bytes([data[p + 1], data[p + 2]]));
        let bytes = &data[p + 3..(p + 3 + n).min(data.len())];
        p += 3 + n;
        ts += 1;
        let side = usize::from(ctl & 1);
        if ctl & 8 != 0 {
            let b = hp.decode(bytes);
            // octets on the wire: the headers are Latin-1 text, one char per octet
            let list: usize = b
                .headers
                .iter()
                .map(|(n, v)| n.chars().count() + v.chars().count() + 32)
                .sum();
            assert!(list <= 1024);
        } else if ctl & 2 != 0 {
            c.gap(side, n as u64, ts);
        } else {
            c.feed(side, bytes, ts, &mut out);
        }
    }
    c.close(&mut out);
    assert!(out.len() <= 16 * 4 + data.len());
    for st in &out {
        assert!(st.req.body.len() <= 64 && st.res.body.len() <= 64);
        let pair =
            crate::h2::rrpair::build(&crate::pb::RrPair::default(), st.clone(), "f".into(), 64);
        let _ = crate::json::dumps(&pair);
    }
}

/// Deterministic mutations for the bounded fuzz-style unit tests (here, rules/tests.rs,
/// packet/fuzz.rs): a fixed xorshift sequence, so every run tries the same inputs and no
/// test depends on time.
#[cfg(test)]
pub(crate) struct Mutator(u64);

#[cfg(test)]
impl Mutator {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// One of `items`.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    /// Fewer than `max_edits` edits of v: a byte overwritten, inserted or removed, or up to
    /// 16 bytes of v repeated elsewhere in it. v is never left empty.
    pub(crate) fn mutate(&mut self, v: &mut Vec<u8>, max_edits: u64) {
        for _ in 0..(self.next() % max_edits) {
            let r = self.next();
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
            if v.is_empty() {
                v.push(0);
            }
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
        // a gap inside a chunked body: framing found again at a proven chunk-size line
        b"\x10GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc\xff\x13gapgapgapgapgapgapgapgapgap\xff\x11tail\r\n5\r\nabcde\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"\x11HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\nabc\xff\x13gap\xff\x11xx\r\n0\r\n\r\nmore\r\ncafe\r\n3\r\nabc\r\n0\r\n\r\n\xff\x13g\xff\x11\r\n0\r",
        b"\x10GET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\n\r\n\xff\x11HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 B\r\n\r\n",
    ];

    /// A bounded fuzz-style loop: seeds mutated (super::Mutator) through both targets' bodies.
    #[test]
    fn mutated_seeds_do_not_panic() {
        let mut m = super::Mutator::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut v = m.pick(SEEDS).to_vec();
            m.mutate(&mut v, 8);
            super::http1(&v);
            super::records(&v);
        }
    }

    /// HTTP/2 seeds (the h2 target's format) mutated the same way.
    #[test]
    fn mutated_h2_seeds_do_not_panic() {
        let preface = crate::h2::frames::PREFACE;
        let piece = |ctl: u8, b: &[u8]| {
            let mut v = vec![ctl];
            v.extend((b.len() as u16).to_be_bytes());
            v.extend(b);
            v
        };
        let mut client = preface.to_vec();
        // SETTINGS; HEADERS (:method GET, :scheme http, :path /, literal authority); DATA
        client.extend([0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 0]);
        client.extend([
            0, 0, 7, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 2, b'h', b'x',
        ]);
        let server = [
            0, 0, 2, 1, 4, 0, 0, 0, 1, 0x88, 0xbe, 0, 0, 3, 0, 1, 0, 0, 0, 1, b'a', b'b', b'c',
        ];
        let mut seeds = Vec::new();
        let mut a = piece(0, &client);
        a.extend(piece(1, &server));
        seeds.push(a);
        let mut b = piece(4, &client[24..]);
        b.extend(piece(3, &[0; 4]));
        b.extend(piece(1, &server));
        b.extend(piece(
            8,
            &[0x40, 1, b'x', 1, b'y', 0xbe, 0xbf, 0x3f, 0xe1, 0x1f],
        ));
        seeds.push(b);
        let mut m = super::Mutator::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..5000 {
            let mut v = m.pick(&seeds).clone();
            m.mutate(&mut v, 6);
            super::h2(&v);
        }
    }
}
