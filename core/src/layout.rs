//! The mirror of bpf/nodetap.h: constants and decoders of the ring-buffer records.
//!
//! tests/core/test_layout.py checks these against agent/bpf_layout.py (itself checked
//! against the C header). Change all three together.
#![forbid(unsafe_code)]

pub const NT_MAX_CHUNK: usize = 16384;
pub const NT_EV_OPEN: u8 = 1;
pub const NT_EV_CLOSE: u8 = 2;
pub const NT_EV_DATA: u8 = 3;
pub const NT_EV_GAP: u8 = 4;
pub const NT_EV_ADDR: u8 = 5;
/// The bytes sendfile() moved, described by file and range (struct nt_sendfile_event: the
/// data header, then where they came from): Python reads them back (agent/sendfile_bodies.py)
/// and gives them to `Decoder::feed_sendfile`.
pub const NT_EV_SENDFILE: u8 = 7;
/// Not a kernel bit: an OPEN record the agent writes for a connection opened before the
/// capture sets this in `family` (its stream may begin mid-message).
pub const NT_FAMILY_PREEXISTING: u16 = 0x8000;
/// A GAP record's syscall bit: bytes not copied on purpose (past the copy bound).
pub const NT_GAP_BOUND: u16 = 0x8000;
/// issue 21: TLS plaintext (a data record whose offset counts plaintext bytes) and a gap in it.
pub const NT_EV_TLS_DATA: u8 = 8;
pub const NT_EV_TLS_GAP: u8 = 9;
/// conn flag: the connection carries TLS.
pub const NT_CONN_TLS: u8 = 16;
/// The function of a TLS record (its syscall field).
pub const NT_TLS_FN_SSL_READ: u16 = 1;
pub const NT_TLS_FN_SSL_WRITE: u16 = 2;
pub const NT_TLS_FN_SSL_READ_EX: u16 = 3;
pub const NT_TLS_FN_SSL_WRITE_EX: u16 = 4;
pub const NT_TLS_FN_GO_READ: u16 = 5;
pub const NT_TLS_FN_GO_WRITE: u16 = 6;
pub const NT_ROLE_UNKNOWN: u8 = 0;
pub const NT_ROLE_CLIENT: u8 = 1;
pub const NT_ROLE_SERVER: u8 = 2;
pub const NT_DIR_EGRESS: u8 = 0;
pub const NT_DIR_INGRESS: u8 = 1;
/// struct nt_data_event: bytes before `data`.
pub const NT_DATA_HDR_SIZE: usize = 40;
/// sizeof(struct nt_conn_event).
pub const NT_CONN_EVENT_SIZE: usize = 104;

/// (name, offset) of every field of struct nt_conn_event.
pub const CONN_EVENT_OFFSETS: &[(&str, usize)] = &[
    ("kind", 0),
    ("role", 1),
    ("family", 2),
    ("tgid", 4),
    ("conn_id", 8),
    ("ts_ns", 16),
    ("fd", 24),
    ("lport", 28),
    ("rport", 30),
    ("laddr", 32),
    ("raddr", 48),
    ("off", 64),
    ("cgroup_id", 80),
    ("comm", 88),
];

/// (name, offset) of every field of struct nt_data_event.
pub const DATA_EVENT_OFFSETS: &[(&str, usize)] = &[
    ("kind", 0),
    ("dir", 1),
    ("syscall", 2),
    ("len", 4),
    ("conn_id", 8),
    ("ts_ns", 16),
    ("offset", 24),
    ("tgid", 32),
    ("_pad", 36),
    ("data", 40),
];

/// NT_EV_DATA / NT_EV_GAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataEvent<'a> {
    pub kind: u8,
    pub dir: u8,
    pub syscall: u16,
    pub len: u32,
    pub conn_id: u64,
    pub ts_ns: u64,
    pub offset: u64,
    pub tgid: u32,
    pub fd: u32,
    /// The payload (DATA only; empty for GAP).
    pub data: &'a [u8],
}

/// NT_EV_OPEN / NT_EV_CLOSE / NT_EV_ADDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEvent {
    pub kind: u8,
    pub role: u8,
    pub family: u16,
    pub tgid: u32,
    pub conn_id: u64,
    pub ts_ns: u64,
    pub fd: u32,
    pub lport: u16,
    pub rport: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub off: [u64; 2],
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Data(DataEvent<'a>),
    Conn(ConnEvent),
    /// A kind this build does not know, or a record too short for its kind.
    Invalid,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn arr16(b: &[u8], o: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[o..o + 16]);
    a
}

/// Decode one record payload (without the ring-buffer header).
pub fn decode(rec: &[u8]) -> Record<'_> {
    let Some(&kind) = rec.first() else {
        return Record::Invalid;
    };
    match kind {
        NT_EV_DATA | NT_EV_GAP | NT_EV_SENDFILE | NT_EV_TLS_DATA | NT_EV_TLS_GAP => {
            if rec.len() < NT_DATA_HDR_SIZE {
                return Record::Invalid;
            }
            let len = u32_at(rec, 4);
            let data = if kind == NT_EV_DATA || kind == NT_EV_TLS_DATA {
                let end = NT_DATA_HDR_SIZE.saturating_add(len as usize);
                match rec.get(NT_DATA_HDR_SIZE..end) {
                    Some(d) => d,
                    None => return Record::Invalid,
                }
            } else {
                &[]
            };
            Record::Data(DataEvent {
                kind,
                dir: rec[1],
                syscall: u16_at(rec, 2),
                len,
                conn_id: u64_at(rec, 8),
                ts_ns: u64_at(rec, 16),
                offset: u64_at(rec, 24),
                tgid: u32_at(rec, 32),
                fd: u32_at(rec, 36),
                data,
            })
        }
        NT_EV_OPEN | NT_EV_CLOSE | NT_EV_ADDR => {
            if rec.len() < NT_CONN_EVENT_SIZE {
                return Record::Invalid;
            }
            Record::Conn(ConnEvent {
                kind,
                role: rec[1],
                family: u16_at(rec, 2),
                tgid: u32_at(rec, 4),
                conn_id: u64_at(rec, 8),
                ts_ns: u64_at(rec, 16),
                fd: u32_at(rec, 24),
                lport: u16_at(rec, 28),
                rport: u16_at(rec, 30),
                laddr: arr16(rec, 32),
                raddr: arr16(rec, 48),
                off: [u64_at(rec, 64), u64_at(rec, 72)],
                cgroup_id: u64_at(rec, 80),
                comm: arr16(rec, 88),
            })
        }
        _ => Record::Invalid,
    }
}

/// Ring-buffer record header flags (kernel/bpf/ringbuf.c).
pub const RB_BUSY: u32 = 1 << 31;
pub const RB_DISCARD: u32 = 1 << 30;
pub const RB_HDR: usize = 8;

/// The payloads of the committed, not discarded records of ring-buffer-format bytes, as
/// agent/ringbuf.py's iter_records walks them (stops at BUSY or at a truncated tail).
pub fn records(blob: &[u8]) -> impl Iterator<Item = &[u8]> {
    records_from(blob, 0).map(|(_, _, rec)| rec)
}

/// As `records`, from byte `start` of `blob`, with each payload's start and the start of
/// the next record's header.
pub fn records_from(blob: &[u8], start: usize) -> impl Iterator<Item = (usize, usize, &[u8])> {
    let mut off = start;
    std::iter::from_fn(move || loop {
        if off + RB_HDR > blob.len() {
            return None;
        }
        let word = u32_at(blob, off);
        if word & RB_BUSY != 0 {
            return None;
        }
        let len = (word & !(RB_BUSY | RB_DISCARD)) as usize;
        let next = off + ((RB_HDR + len + 7) & !7);
        if next > blob.len() {
            return None;
        }
        let start = off + RB_HDR;
        off = next;
        if word & RB_DISCARD == 0 {
            return Some((start, next, &blob[start..start + len]));
        }
    })
}

/// An address as agent/procfs.normalize_ip writes it: IPv4-mapped IPv6 as IPv4.
pub fn ip_text(a: &[u8; 16]) -> String {
    let v6 = std::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_records_and_skips_discarded() {
        let mut blob = Vec::new();
        for (p, discard) in [(&b"abc"[..], false), (b"defghijkl", true), (b"x", false)] {
            let word = p.len() as u32 | if discard { RB_DISCARD } else { 0 };
            blob.extend(word.to_le_bytes());
            blob.extend(0u32.to_le_bytes());
            blob.extend(p);
            blob.resize(blob.len().div_ceil(8) * 8, 0);
        }
        let got: Vec<&[u8]> = records(&blob).collect();
        assert_eq!(got, vec![&b"abc"[..], b"x"]);
        assert_eq!(records(&blob[..blob.len() - 1]).count(), 1);
    }

    #[test]
    fn short_records_are_invalid() {
        assert_eq!(decode(&[NT_EV_DATA, 0, 0]), Record::Invalid);
        assert_eq!(decode(&[NT_EV_OPEN; 50]), Record::Invalid);
        assert_eq!(decode(&[]), Record::Invalid);
    }
}
