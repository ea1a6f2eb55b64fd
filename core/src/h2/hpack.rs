//! HPACK (RFC 7541) for one direction of a connection, through the loona-hpack crate's
//! decoder (one dynamic table per direction), plus what a passive observer needs on top:
//!
//! - A table of unknown content (a connection joined mid-way, a gap, a block that failed):
//!   the crate's table is filled with placeholder entries (empty name and value, 32
//!   octets each, as many as a 4,096-octet table holds). A header that resolves to a
//!   placeholder (an empty name) referenced an entry we never saw: it is left out and the
//!   block flagged. Placeholders are the oldest entries, so every entry the peer inserts
//!   pushes them out exactly as it pushes out the real ones; a shadow of the table's entry
//!   sizes tells when the last unknown entry is gone: from then on the table is trusted
//!   (`trusted()`), which takes at most 4,096 octets of newly indexed headers, or at once
//!   a dynamic table size update to 0.
//! - Speed: loona-hpack builds its Huffman decoder (hash maps of the code) for every
//!   Huffman-coded string, which cost more than the rest of decoding together; the block is
//!   handed to it with those strings already decoded (httlib-huffman's table-driven
//!   decoder) and written as plain literals, which it copies as they are (`plain()`).
//! - Bounds: a decoded header list above `max_list` octets (RFC 7541 §4.1 sizes) is cut
//!   and flagged (HPACK bombs: one-octet references to a large entry); a table size update
//!   above MAX_TABLE is an error.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use crate::http1::latin1;

/// The largest dynamic table a peer may ask for (SETTINGS_HEADER_TABLE_SIZE is 4,096 by
/// default; a few servers announce 64 KiB).
pub const MAX_TABLE: usize = 1 << 16;
const DEFAULT_TABLE: usize = 4096;
const ENTRY_OVERHEAD: usize = 32;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Block {
    pub headers: Vec<(String, String)>,
    /// the block referenced dynamic-table entries we do not know
    pub unknown: bool,
    /// the block did not decode (its headers are what came before the error)
    pub error: bool,
    /// the header list passed `max_list`: the rest was left out
    pub oversized: bool,
}

#[derive(Debug, Clone, Copy)]
enum Rep {
    Header { index: bool },
    SizeUpdate(usize),
}

pub struct HpackDecoder {
    dec: loona_hpack::Decoder<'static>,
    /// sizes of the dynamic table's entries, newest first, and whether each is unknown
    shadow: VecDeque<(usize, bool)>,
    size: usize,
    max: usize,
    unknown: usize,
    pub max_list: usize,
}

impl std::fmt::Debug for HpackDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpackDecoder")
            .field("entries", &self.shadow.len())
            .field("unknown", &self.unknown)
            .finish()
    }
}

impl HpackDecoder {
    /// `known`: the connection is seen from its start (the table starts empty).
    pub fn new(known: bool, max_list: usize) -> Self {
        let mut d = Self {
            dec: loona_hpack::Decoder::new(),
            shadow: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE,
            unknown: 0,
            max_list,
        };
        d.dec.set_max_allowed_table_size(MAX_TABLE);
        if !known {
            d.forget();
        }
        d
    }

    /// Every entry of the dynamic table is known.
    pub fn trusted(&self) -> bool {
        self.unknown == 0
    }

    /// The table's content is no longer known (bytes lost, a block not decoded).
    pub fn forget(&mut self) {
        self.dec = loona_hpack::Decoder::new();
        self.dec.set_max_allowed_table_size(MAX_TABLE);
        let n = DEFAULT_TABLE / ENTRY_OVERHEAD;
        let block: Vec<u8> = [0x40u8, 0, 0].repeat(n);
        // cannot fail: literals with incremental indexing of an empty name and value
        let _ = self.dec.decode_with_cb(&block, |_, _| {});
        self.shadow = std::iter::repeat_n((ENTRY_OVERHEAD, true), n).collect();
        self.size = n * ENTRY_OVERHEAD;
        self.max = DEFAULT_TABLE;
        self.unknown = n;
    }

    fn evict(&mut self) {
        while self.size > self.max {
            match self.shadow.pop_back() {
                Some((s, u)) => {
                    self.size -= s;
                    if u {
                        self.unknown -= 1;
                    }
                }
                None => break,
            }
        }
    }

    fn insert(&mut self, size: usize, unknown: bool) {
        self.shadow.push_front((size, unknown));
        self.size += size;
        if unknown {
            self.unknown += 1;
        }
        self.evict();
    }

    /// Decode one whole header block (HEADERS or PUSH_PROMISE plus its CONTINUATIONs).
    pub fn decode(&mut self, block: &[u8]) -> Block {
        let mut out = Block::default();
        let Some((reps, plain)) = plain(block) else {
            out.error = true;
            self.forget();
            return out;
        };
        let block = plain.as_deref().unwrap_or(block);
        // (name length, value length, name empty) of every header the crate gives
        let mut seen: Vec<(usize, usize, bool)> = Vec::new();
        let mut list = 0usize;
        let max_list = self.max_list;
        let res = self.dec.decode_with_cb(block, |n, v| {
            seen.push((n.len(), v.len(), n.is_empty()));
            if n.is_empty() {
                out.unknown = true;
                return;
            }
            list += n.len() + v.len() + ENTRY_OVERHEAD;
            if list > max_list {
                out.oversized = true;
                return;
            }
            out.headers.push((latin1(&n), latin1(&v)));
        });
        if res.is_err() {
            out.error = true;
            self.forget();
            return out;
        }
        let mut it = seen.into_iter();
        for r in reps {
            match r {
                Rep::SizeUpdate(n) => {
                    self.max = n;
                    self.evict();
                }
                Rep::Header { index } => {
                    let Some((n, v, empty)) = it.next() else {
                        break;
                    };
                    if index {
                        self.insert(n + v + ENTRY_OVERHEAD, empty);
                    }
                }
            }
        }
        out
    }
}

/// HPACK integer with an N-bit prefix: (value, octets used).
fn integer(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = (1u16 << prefix) as u8 - 1;
    let first = *b.first()? & mask;
    if first < mask {
        return Some((usize::from(first), 1));
    }
    let mut v = usize::from(mask);
    for (i, &c) in b.iter().enumerate().skip(1).take(5) {
        v = v.checked_add(usize::from(c & 0x7f) << (7 * (i - 1)))?;
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// HPACK integer with a 7-bit prefix and the first octet's high bit `high`, appended.
fn put_integer(out: &mut Vec<u8>, mut v: usize, high: u8) {
    if v < 0x7f {
        out.push(high | v as u8);
        return;
    }
    out.push(high | 0x7f);
    v -= 0x7f;
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A string literal at the start of b: (its octets on the wire, whether Huffman-coded,
/// the length of its prefix).
fn string_at(b: &[u8]) -> Option<(usize, bool, usize)> {
    let (n, used) = integer(b, 7)?;
    let end = used.checked_add(n)?;
    (end <= b.len()).then_some((end, b[0] & 0x80 != 0, used))
}

/// The kinds of a block's representations, in order, and the block with its
/// Huffman-coded strings written as plain literals (None when it has none); None when
/// the block is malformed.
fn plain(b: &[u8]) -> Option<(Vec<Rep>, Option<Vec<u8>>)> {
    let mut reps = Vec::new();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0; // b[..copied] is in out already
    let mut p = 0;
    while p < b.len() {
        let c = b[p];
        let rest = &b[p..];
        if c & 0x80 != 0 {
            let (_, used) = integer(rest, 7)?;
            reps.push(Rep::Header { index: false });
            p += used;
            continue;
        }
        if c & 0xe0 == 0x20 {
            let (n, used) = integer(rest, 5)?;
            reps.push(Rep::SizeUpdate(n));
            p += used;
            continue;
        }
        let (index, prefix) = if c & 0x40 != 0 { (true, 6) } else { (false, 4) };
        let (name_idx, used) = integer(rest, prefix)?;
        p += used;
        for _ in 0..if name_idx == 0 { 2 } else { 1 } {
            let (end, huffman, head) = string_at(&b[p..])?;
            if huffman {
                let o = out.get_or_insert_with(|| Vec::with_capacity(b.len() * 2));
                o.extend_from_slice(&b[copied..p]);
                let mut text = Vec::with_capacity(end * 2);
                let speed = httlib_huffman::DecoderSpeed::FourBits;
                httlib_huffman::decode(&b[p + head..p + end], &mut text, speed).ok()?;
                put_integer(o, text.len(), 0);
                o.extend_from_slice(&text);
                copied = p + end;
            }
            p += end;
        }
        reps.push(Rep::Header { index });
    }
    if let Some(o) = out.as_mut() {
        o.extend_from_slice(&b[copied..]);
    }
    Some((reps, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(headers: &[(&[u8], &[u8])], e: &mut loona_hpack::Encoder<'_>) -> Vec<u8> {
        e.encode(headers.iter().map(|&(n, v)| (n, v)))
    }

    #[test]
    fn dynamic_table_reuse() {
        let mut e = loona_hpack::Encoder::new();
        let mut d = HpackDecoder::new(true, 1 << 16);
        let h: &[(&[u8], &[u8])] = &[(b":method", b"GET"), (b"x-long", b"a value to index")];
        for _ in 0..3 {
            let b = d.decode(&enc(h, &mut e));
            assert!(!b.unknown && !b.error);
            assert_eq!(b.headers[1], ("x-long".into(), "a value to index".into()));
        }
        assert!(d.trusted());
    }

    #[test]
    fn joined_mid_way_flags_then_trusts_again() {
        let mut e = loona_hpack::Encoder::new();
        let early = enc(&[(b"x-early", b"1")], &mut e);
        let mut d = HpackDecoder::new(false, 1 << 16);
        assert!(!d.trusted());
        // a reference to an entry inserted before we joined
        let b = d.decode(&enc(&[(b"x-early", b"1"), (b":path", b"/")], &mut e));
        assert!(b.unknown);
        assert_eq!(b.headers, vec![(":path".into(), "/".into())]);
        drop(early);
        // newly indexed headers push the unknown entries out
        let mut i = 0;
        while !d.trusted() {
            let v = format!("{i:0>100}");
            let name = format!("x-fill-{i}");
            let b = d.decode(&enc(&[(name.as_bytes(), v.as_bytes())], &mut e));
            assert!(!b.error);
            i += 1;
            assert!(i < 40);
        }
        assert!(d.trusted());
    }

    #[test]
    fn a_size_update_to_zero_empties_the_table() {
        let mut d = HpackDecoder::new(false, 1 << 16);
        let b = d.decode(&[0x20, 0x3f, 0xe1, 0x1f, 0x82]); // size 0, size 4096, :method GET
        assert!(!b.error, "{b:?}");
        assert!(d.trusted());
        assert_eq!(b.headers, vec![(":method".into(), "GET".into())]);
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn huffman_coded_strings_rfc7541_c4() {
        // RFC 7541 C.4: requests with Huffman coding, one table across them
        let mut d = HpackDecoder::new(true, 1 << 16);
        let b = d.decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        assert!(!b.error && !b.unknown, "{b:?}");
        let want = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
        let mut want: Vec<(String, String)> =
            want.iter().map(|&(n, v)| (n.into(), v.into())).collect();
        want.push((":authority".into(), "www.example.com".into()));
        assert_eq!(b.headers, want);
        let b = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf"));
        want.push(("cache-control".into(), "no-cache".into()));
        assert_eq!(b.headers, want);
        let b = d.decode(&hex(
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ));
        assert_eq!(b.headers[2], (":path".into(), "/index.html".into()));
        assert_eq!(b.headers[4], ("custom-key".into(), "custom-value".into()));
        assert!(d.trusted());
        // a Huffman string that holds the EOS code (30 one bits): an error
        assert!(d.decode(&hex("04 84 ffff ffff")).error);
    }

    #[test]
    fn bombs_are_bounded() {
        let mut d = HpackDecoder::new(true, 1000);
        // insert a 300-octet entry, then reference it 1,000 times
        let mut block = vec![0x40, 3, b'x', b'-', b'b', 0x7f, 0xad, 1];
        block.extend(vec![b'v'; 300]);
        block.extend(vec![0xbe; 1000]);
        let b = d.decode(&block);
        assert!(b.oversized && !b.error, "{b:?}");
        assert!(b.headers.len() < 5);
        // a table size above the bound is an error, and the table is then unknown
        let b = d.decode(&[0x3f, 0xe1, 0xff, 0x7f]);
        assert!(b.error);
        assert!(!d.trusted());
        // garbage
        assert!(d.decode(&[0x40, 0x85]).error);
    }
}
