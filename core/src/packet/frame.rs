//! One captured frame in, one TCP segment out (agent/packet/decode.py's job, same answers).
//!
//! Link types: Ethernet (with 802.1Q/802.1ad VLAN tags), Linux cooked captures (SLL, SLL2),
//! BSD loopback (DLT_NULL, DLT_LOOP) and raw IP (v4 and v6). The IP and TCP headers, the
//! Ethernet header and its VLAN tags are read by etherparse; the cooked and loopback
//! headers are two fields read here.
#![forbid(unsafe_code)]

use etherparse::{
    ip_number, Ethernet2HeaderSlice, IpNumber, Ipv6ExtensionSlice, Ipv6ExtensionsSlice,
    Ipv6HeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice,
};

pub const FIN: u16 = 0x01;
pub const SYN: u16 = 0x02;
pub const RST: u16 = 0x04;
pub const ACK: u16 = 0x10;

/// An address: IPv4 as IPv4-mapped IPv6 (what the OPEN record carries).
pub type Addr = [u8; 16];

/// The link types (pcap LINKTYPE_* values) understood, as decode.py's LinkType.
pub const LINKTYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

pub fn supported(linktype: u32) -> bool {
    LINKTYPES.contains(&linktype)
}

/// One TCP segment as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    pub payload: &'a [u8],
    /// payload bytes announced by the IP header but cut by the snap length
    pub missing: u32,
}

/// What a frame holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Tcp(Segment<'a>),
    /// well formed, but no TCP segment (ARP, UDP, fragments, ...)
    NotTcp,
    /// truncated headers, bad lengths
    Malformed,
}

const ETH_IP4: u16 = 0x0800;
const ETH_IP6: u16 = 0x86dd;

fn mapped(a: [u8; 4]) -> Addr {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&a);
    out
}

fn be16(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

/// Decode one frame of a capture with link type `linktype`.
pub fn decode(linktype: u32, buf: &[u8]) -> Frame<'_> {
    match linktype {
        1 => ethernet(buf),
        113 => match (be16(buf, 14), buf.get(16..)) {
            (Some(et), Some(rest)) => by_ethertype(et, rest),
            _ => Frame::Malformed,
        },
        276 => match (be16(buf, 0), buf.get(20..)) {
            (Some(et), Some(rest)) => by_ethertype(et, rest),
            _ => Frame::Malformed,
        },
        0 | 108 => loopback(buf),
        12 | 14 | 101 => match buf.first().map(|b| b >> 4) {
            Some(4) => ipv4(buf),
            Some(6) => ipv6(buf),
            _ => Frame::Malformed,
        },
        228 => ipv4(buf),
        229 => ipv6(buf),
        _ => Frame::Malformed,
    }
}

fn ethernet(buf: &[u8]) -> Frame<'_> {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(buf) else {
        return Frame::Malformed;
    };
    let mut et = eth.ether_type().0;
    let mut rest = &buf[eth.slice().len()..];
    // 802.1Q / 802.1ad tags, stacked at most a few deep
    for _ in 0..4 {
        if et != 0x8100 && et != 0x88a8 {
            break;
        }
        let Ok(tag) = SingleVlanHeaderSlice::from_slice(rest) else {
            return Frame::Malformed;
        };
        et = tag.ether_type().0;
        rest = &rest[tag.slice().len()..];
    }
    if et <= 1500 {
        return llc(rest);
    }
    if rest.len() < buf.len() - 14 && ip_header_unusable(et, rest) {
        // behind a VLAN tag dpkt leaves an unreadable IP header as opaque bytes
        return Frame::NotTcp;
    }
    by_ethertype(et, rest)
}

fn ip_header_unusable(et: u16, rest: &[u8]) -> bool {
    match et {
        ETH_IP4 => rest.len() < 20 || rest[0] & 15 < 5,
        ETH_IP6 => rest.len() < 40,
        _ => false,
    }
}

/// IEEE 802.3 with an LLC header (a length, not a type): IP only behind SNAP.
fn llc(rest: &[u8]) -> Frame<'_> {
    if rest.len() < 3 {
        return Frame::Malformed;
    }
    if rest[0] == 0xaa && rest[1] == 0xaa {
        return match (be16(rest, 6), rest.get(8..)) {
            (Some(et), Some(ip)) => by_ethertype(et, ip),
            _ => Frame::Malformed,
        };
    }
    Frame::NotTcp
}

fn by_ethertype(et: u16, rest: &[u8]) -> Frame<'_> {
    match et {
        ETH_IP4 => ipv4(rest),
        ETH_IP6 => ipv6(rest),
        _ => Frame::NotTcp,
    }
}

/// DLT_NULL (host byte order) and DLT_LOOP (network byte order): a 4-byte family.
fn loopback(buf: &[u8]) -> Frame<'_> {
    let Some(head) = buf.get(..4) else {
        return Frame::Malformed;
    };
    let mut family = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if matches!(
        family,
        0x0200_0000 | 0x1800_0000 | 0x1c00_0000 | 0x1e00_0000
    ) {
        family >>= 24;
    }
    let rest = &buf[4..];
    match family {
        2 => ipv4(rest),
        24 | 28 | 30 => ipv6(rest),
        f if f > 1500 => ethernet(rest),
        _ => Frame::Malformed,
    }
}

/// IPv4, read as dpkt reads it (the version nibble is the link layer's business; the
/// payload is cut at the total length): a few fields, read here.
fn ipv4(buf: &[u8]) -> Frame<'_> {
    if buf.len() < 20 {
        return Frame::Malformed;
    }
    let hl = usize::from(buf[0] & 15) * 4;
    if hl < 20 {
        return Frame::Malformed;
    }
    if buf[9] != 6 {
        return Frame::NotTcp;
    }
    if be16(buf, 6).unwrap_or(0) & 0x3fff != 0 {
        return Frame::NotTcp; // a fragment
    }
    let total = usize::from(be16(buf, 2).unwrap_or(0));
    let start = hl.min(buf.len());
    let end = if total == 0 {
        buf.len()
    } else {
        total.min(buf.len())
    };
    let data = if end > start {
        &buf[start..end]
    } else {
        &[][..]
    };
    let announced = (total != 0).then(|| total as i64 - hl as i64);
    let addr = |o: usize| mapped([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
    tcp(addr(12), addr(16), data, announced)
}

fn ipv6(buf: &[u8]) -> Frame<'_> {
    let Ok(h) = Ipv6HeaderSlice::from_slice(buf) else {
        return Frame::Malformed;
    };
    let plen = usize::from(h.payload_length());
    let body = &buf[40..];
    let body = if plen == 0 {
        body
    } else {
        &body[..plen.min(body.len())]
    };
    let (next, ext_len, rest) = if is_ext(h.next_header()) {
        match Ipv6ExtensionsSlice::from_slice(h.next_header(), body) {
            Ok((exts, next, rest)) => {
                if exts
                    .clone()
                    .into_iter()
                    .any(|e| matches!(e, Ipv6ExtensionSlice::Fragment(_)))
                {
                    return Frame::NotTcp;
                }
                (next, exts.slice().len(), rest)
            }
            Err(_) => return Frame::NotTcp, // dpkt reads a broken extension as not TCP
        }
    } else {
        (h.next_header(), 0, body)
    };
    if next != ip_number::TCP {
        return Frame::NotTcp;
    }
    let announced = if plen == 0 {
        None
    } else {
        match plen.checked_sub(ext_len) {
            Some(a) => Some(a as i64),
            None => return Frame::Malformed,
        }
    };
    tcp(h.source(), h.destination(), rest, announced)
}

fn is_ext(n: IpNumber) -> bool {
    matches!(
        n,
        ip_number::IPV6_HOP_BY_HOP
            | ip_number::IPV6_ROUTE
            | ip_number::IPV6_FRAG
            | ip_number::IPV6_DEST_OPTIONS
            | ip_number::AUTH
    )
}

/// The TCP header and payload in `data` (the IP payload as captured); `announced`: the IP
/// payload's length by the IP header (None: not given, as with TSO).
fn tcp(src: Addr, dst: Addr, data: &[u8], announced: Option<i64>) -> Frame<'_> {
    let (hdr, sport, dport, seq, ack) = match TcpHeaderSlice::from_slice(data) {
        Ok(t) => (
            t.slice().len(),
            t.source_port(),
            t.destination_port(),
            t.sequence_number(),
            t.acknowledgment_number(),
        ),
        // options cut by the snap length: the fixed header is enough (as dpkt reads it)
        Err(_) => match short_tcp(data) {
            Some(f) => f,
            None => return Frame::Malformed,
        },
    };
    let mut payload = data.get(hdr..).unwrap_or_default();
    let mut missing = 0;
    if let Some(a) = announced {
        let Ok(expect) = usize::try_from(a - hdr as i64) else {
            return Frame::Malformed;
        };
        if payload.len() > expect {
            payload = &payload[..expect];
        }
        missing = (expect - payload.len()) as u32;
    }
    // the 9 flag bits (NS .. FIN), as decode.py keeps them
    let flags = be16(data, 12).map_or(0, |v| v & 0x1ff);
    Frame::Tcp(Segment {
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags,
        payload,
        missing,
    })
}

/// A TCP header whose options the capture cut: (header length, ports, seq, ack).
fn short_tcp(data: &[u8]) -> Option<(usize, u16, u16, u32, u32)> {
    let h = data.get(..20)?;
    let doff = usize::from(h[12] >> 4) * 4;
    if doff < 20 {
        return None;
    }
    let u32_at = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    Some((doff, be16(h, 0)?, be16(h, 2)?, u32_at(4), u32_at(8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(payload: &[u8], flags: u8) -> Vec<u8> {
        let total = (20 + 20 + payload.len()) as u16;
        let mut b = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        b[2..4].copy_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&[0x1f, 0x90, 0x00, 0x50, 0, 0, 0, 7, 0, 0, 0, 9, 0x50, flags]);
        b.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn raw_ethernet_and_cooked_frames_agree() {
        let ip = v4_tcp(b"GET /", 0x18);
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        eth.extend_from_slice(&[0, 0, 0]); // padding
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        for (lt, f) in [(101, &ip), (1, &eth), (113, &sll)] {
            let Frame::Tcp(s) = decode(lt, f) else {
                panic!("{lt}")
            };
            assert_eq!(s.payload, b"GET /");
            assert_eq!(
                (s.sport, s.dport, s.seq, s.ack, s.flags),
                (8080, 80, 7, 9, 0x18)
            );
            assert_eq!(s.src, mapped([10, 0, 0, 1]));
            assert_eq!(s.missing, 0);
        }
    }

    #[test]
    fn snapped_frames_count_missing_bytes_and_fragments_are_not_tcp() {
        let ip = v4_tcp(b"0123456789", 0x10);
        let Frame::Tcp(s) = decode(101, &ip[..45]) else {
            panic!()
        };
        assert_eq!((s.payload, s.missing), (&b"01234"[..], 5));
        let mut frag = ip.clone();
        frag[6] = 0x20; // MF
        assert_eq!(decode(101, &frag), Frame::NotTcp);
        assert_eq!(decode(101, &ip[..30]), Frame::Malformed);
        assert_eq!(decode(101, b""), Frame::Malformed);
    }
}
