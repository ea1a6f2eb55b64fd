//! The blocks of a TPACKET_V3 receive ring (PACKET_RX_RING, linux/if_packet.h): a retired
//! block holds `num_pkts` frames, each behind a `tpacket3_hdr` with its kernel timestamp.
#![forbid(unsafe_code)]

// struct tpacket_block_desc: version, offset_to_priv, then struct tpacket_hdr_v1
const BLK_NUM_PKTS: usize = 12;
const BLK_FIRST: usize = 16;
// struct tpacket3_hdr
const TP_NEXT: usize = 0;
const TP_SEC: usize = 4;
const TP_NSEC: usize = 8;
const TP_SNAPLEN: usize = 12;
const TP_MAC: usize = 24;
const TP_HDR_MIN: usize = 32;

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

/// The frames of one block: (wall-clock ns, captured bytes). A block whose headers point
/// outside it ends the walk (counted by the caller as what the block announced minus what
/// came out).
pub fn frames(block: &[u8]) -> (u32, Vec<(u64, &[u8])>) {
    let mut out = Vec::new();
    let (Some(n), Some(first)) = (u32_at(block, BLK_NUM_PKTS), u32_at(block, BLK_FIRST)) else {
        return (0, out);
    };
    let mut at = first as usize;
    for _ in 0..n {
        let Some(hdr) = block.get(at..at + TP_HDR_MIN) else {
            break;
        };
        let (Some(next), Some(sec), Some(nsec), Some(snap), Some(mac)) = (
            u32_at(hdr, TP_NEXT),
            u32_at(hdr, TP_SEC),
            u32_at(hdr, TP_NSEC),
            u32_at(hdr, TP_SNAPLEN),
            u16_at(hdr, TP_MAC),
        ) else {
            break;
        };
        let start = at + usize::from(mac);
        let Some(data) = block.get(start..start + snap as usize) else {
            break;
        };
        out.push((u64::from(sec) * 1_000_000_000 + u64::from(nsec), data));
        if next == 0 {
            break;
        }
        at += next as usize;
    }
    (n, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_block() {
        let mut b = vec![0u8; 48];
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        b[16..20].copy_from_slice(&48u32.to_le_bytes());
        for (i, payload) in [&b"abc"[..], &b"defg"[..]].iter().enumerate() {
            let mut h = vec![0u8; 64];
            let next: u32 = if i == 0 { 72 } else { 0 };
            h[0..4].copy_from_slice(&next.to_le_bytes());
            h[4..8].copy_from_slice(&(i as u32 + 1).to_le_bytes());
            h[8..12].copy_from_slice(&5u32.to_le_bytes());
            h[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            h[24..26].copy_from_slice(&64u16.to_le_bytes());
            h.extend_from_slice(payload);
            h.resize(72, 0);
            b.extend_from_slice(&h);
        }
        let (n, f) = frames(&b);
        assert_eq!(n, 2);
        assert_eq!(
            f,
            vec![(1_000_000_005, &b"abc"[..]), (2_000_000_005, &b"defg"[..])]
        );
    }
}
