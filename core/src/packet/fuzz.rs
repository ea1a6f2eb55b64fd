//! The body of the `packets` fuzz target (core/fuzz), shared with `cargo test`'s bounded
//! loop below: arbitrary frames through the whole packet path must not panic (the pipeline
//! catches and counts a panic per frame; here a caught one fails too).
#![forbid(unsafe_code)]

use std::collections::HashSet;

use crate::decoder::{Decoder, Formats};

use super::flows::Limits;
use super::frame::LINKTYPES;
use super::Pipeline;

/// `data`: a link type index byte, then frames, each a big-endian u16 length and its bytes
/// (a tpacket block too: the same bytes walked as one).
pub fn frames(data: &[u8]) {
    let Some((&lt, mut rest)) = data.split_first() else {
        return;
    };
    let linktype = LINKTYPES[usize::from(lt) % LINKTYPES.len()];
    let dec = Decoder::new(
        1024,
        0,
        "f".into(),
        Formats {
            protobuf: true,
            jsonl: true,
        },
    );
    let lim = Limits {
        ports: HashSet::new(),
        idle_timeout_ns: 1_000_000,
        max_flows: 8,
        max_buffered: 1 << 14,
        max_stream_buffer: 1 << 12,
    };
    let mut pipe = Pipeline::new(dec, "pcap".into(), String::new(), lim);
    let mut ts = 0u64;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        pipe.frame(ts, linktype, &rest[2..2 + n]);
        ts += 1000;
        rest = &rest[2 + n..];
    }
    let _ = super::tpacket::frames(data);
    pipe.finish();
    assert_eq!(
        pipe.stats.panics, 0,
        "a frame panicked inside the packet path"
    );
}

#[cfg(test)]
mod tests {
    /// One HTTP/1.1 exchange on IPv4 over Ethernet (handshake, request, response, FINs),
    /// each frame behind its u16 length.
    fn seed() -> Vec<u8> {
        let tcp = |sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]| {
            let mut f = vec![0u8; 12];
            f.extend([0x08, 0x00]);
            let total = (40 + payload.len()) as u16;
            f.extend([0x45, 0]);
            f.extend(total.to_be_bytes());
            f.extend([0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            if sport != 40000 {
                f[26..30].copy_from_slice(&[10, 0, 0, 2]);
                f[30..34].copy_from_slice(&[10, 0, 0, 1]);
            }
            f.extend(sport.to_be_bytes());
            f.extend(dport.to_be_bytes());
            f.extend(seq.to_be_bytes());
            f.extend(ack.to_be_bytes());
            f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            f.extend(payload);
            f
        };
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let frames = [
            tcp(40000, 80, 100, 0, 0x02, b""),
            tcp(80, 40000, 500, 101, 0x12, b""),
            tcp(40000, 80, 101, 501, 0x18, req),
            tcp(80, 40000, 501, 101 + req.len() as u32, 0x18, res),
            tcp(
                40000,
                80,
                101 + req.len() as u32,
                501 + res.len() as u32,
                0x11,
                b"",
            ),
            tcp(
                80,
                40000,
                501 + res.len() as u32,
                102 + req.len() as u32,
                0x11,
                b"",
            ),
        ];
        let mut v = vec![1u8]; // Ethernet
        for f in frames {
            v.extend((f.len() as u16).to_be_bytes());
            v.extend(f);
        }
        v
    }

    #[test]
    fn mutated_frames_do_not_panic() {
        let base = seed();
        super::frames(&base);
        let mut m = crate::fuzzing::Mutator::new(0x1234_5678_9abc_def1);
        for _ in 0..3000 {
            let mut v = base.clone();
            m.mutate(&mut v, 8);
            super::frames(&v);
        }
    }
}
