//! One direction of a TCP connection: segments in, ordered chunks and gaps out, with the
//! semantics of agent/packet/reassembly.py (tests/packet compares both on every pcap).
//!
//! Sequence numbers are 32-bit and wrap; the stream works in 64-bit offsets counted from
//! its first byte. Out-of-order segments wait in a bounded buffer; retransmitted and
//! overlapping bytes are dropped (the first copy wins; a differing copy is a conflict).
//! Bytes that never arrive become a gap: when the peer acknowledges past them, when the
//! buffer limit is reached, or when the stream is flushed.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

const MASK32: u64 = 0xFFFF_FFFF;
const HALF32: u64 = 0x8000_0000;
/// A segment this far ahead of the next expected byte is not plausible: dropped as bogus.
pub const MAX_AHEAD: i64 = 1 << 30;

/// What became deliverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Chunk { data: Vec<u8>, ts: u64 },
    Gap { size: u64, ts: u64 },
}

/// Counters of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub segments: u64,
    pub bytes: u64,
    pub out_of_order: u64,
    pub duplicate_bytes: u64,
    pub conflicts: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub bogus: u64,
}

pub struct TcpStream {
    max_buffer: u64,
    recent_keep: usize,
    base: u32,
    pub started: bool,
    pub next_offset: i64,
    pub fin_offset: Option<i64>,
    /// bytes waiting for earlier ones: disjoint ranges by start, with their time
    pending: BTreeMap<i64, (Vec<u8>, u64)>,
    pub pending_bytes: u64,
    /// the last delivered bytes, to spot conflicting copies
    recent: Vec<u8>,
    recent_start: i64,
    pub stats: StreamStats,
}

impl TcpStream {
    pub fn new(max_buffer: u64) -> Self {
        Self {
            max_buffer,
            recent_keep: 1 << 16,
            base: 0,
            started: false,
            next_offset: 0,
            fin_offset: None,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            recent: Vec::new(),
            recent_start: 0,
            stats: StreamStats::default(),
        }
    }

    /// The sequence number of the stream's first byte.
    pub fn start(&mut self, seq: u32) {
        self.base = seq;
        self.started = true;
    }

    /// The 64-bit offset of a 32-bit sequence number, nearest the next byte.
    pub fn offset_of(&self, seq: u32) -> i64 {
        let rel = u64::from(seq.wrapping_sub(self.base));
        let nxt = (self.next_offset as u64) & MASK32;
        let diff = ((rel.wrapping_sub(nxt).wrapping_add(HALF32)) & MASK32) as i64 - HALF32 as i64;
        self.next_offset + diff
    }

    /// Whether a segment at `seq` would be delivered at once (the next bytes, nothing
    /// waiting): then `take_in_order` does what `segment` would, without a copy.
    pub fn in_order(&self, seq: u32) -> bool {
        self.started && self.pending.is_empty() && self.offset_of(seq) == self.next_offset
    }

    /// `segment` of an in-order segment (`in_order` said so): the caller delivers `data`.
    pub fn take_in_order(&mut self, data: &[u8]) {
        self.stats.segments += 1;
        self.deliver_new(data);
    }

    /// One segment's payload; appends what became deliverable in order.
    pub fn segment(&mut self, seq: u32, data: &[u8], ts: u64, out: &mut Vec<Event>) {
        if data.is_empty() {
            return;
        }
        if !self.started {
            self.start(seq);
        }
        self.stats.segments += 1;
        let mut off = self.offset_of(seq);
        let nxt = self.next_offset;
        if off == nxt && self.pending.is_empty() {
            self.deliver_new(data);
            out.push(Event::Chunk {
                data: data.to_vec(),
                ts,
            });
            return;
        }
        let end = off + data.len() as i64;
        if end <= nxt {
            self.check_old(off, data);
            return;
        }
        if off - nxt > MAX_AHEAD {
            self.stats.bogus += 1;
            return;
        }
        let mut data = data;
        if off < nxt {
            let cut = (nxt - off) as usize;
            self.check_old(off, &data[..cut]);
            data = &data[cut..];
            off = nxt;
        }
        if off > nxt {
            self.stats.out_of_order += 1;
        }
        self.insert(off, data, ts);
        self.drain(out);
        if self.pending_bytes > self.max_buffer {
            if let Some(first) = self.first_pending() {
                self.skip_to(first, ts, out);
            }
            self.drain(out);
        }
    }

    /// The peer acknowledged bytes up to `ack`: what the capture missed before it will
    /// never come; deliver what waits up to there and report the holes.
    pub fn acked(&mut self, ack: u32, ts: u64, out: &mut Vec<Event>) {
        if !self.started {
            return;
        }
        let mut target = self.offset_of(ack);
        if let Some(fin) = self.fin_offset {
            if target > fin {
                target = fin;
            }
        }
        if target <= self.next_offset || target - self.next_offset > MAX_AHEAD {
            return;
        }
        while self.next_offset < target {
            match self.first_pending() {
                Some(s) if s < target => {
                    self.skip_to(s, ts, out);
                    self.drain(out);
                }
                _ => self.skip_to(target, ts, out),
            }
        }
    }

    /// A segment at `seq` was cut after `captured` bytes: `size` bytes are lost.
    pub fn lost(&mut self, seq: u32, captured: usize, size: u64, ts: u64, out: &mut Vec<Event>) {
        if !self.started || self.offset_of(seq) + captured as i64 != self.next_offset {
            return;
        }
        self.skip_to(self.next_offset + size as i64, ts, out);
        self.drain(out);
    }

    /// A FIN whose segment starts at `seq` with `payload_len` bytes of payload.
    pub fn fin(&mut self, seq: u32, payload_len: u64) {
        if !self.started {
            self.start(seq);
        }
        self.fin_offset = Some(self.offset_of(seq) + payload_len as i64);
    }

    /// The stream ends: deliver everything that waits, gaps for the holes, and a gap up
    /// to a FIN seen beyond it.
    pub fn flush(&mut self, ts: u64, out: &mut Vec<Event>) {
        while let Some(s) = self.first_pending() {
            self.skip_to(s, ts, out);
            self.drain(out);
        }
        if let Some(fin) = self.fin_offset {
            let d = fin - self.next_offset;
            if 0 < d && d <= MAX_AHEAD {
                self.skip_to(fin, ts, out);
            }
        }
    }

    fn first_pending(&self) -> Option<i64> {
        self.pending.keys().next().copied()
    }

    fn deliver_new(&mut self, data: &[u8]) {
        let n = data.len();
        self.next_offset += n as i64;
        self.stats.bytes += n as u64;
        self.recent.extend_from_slice(data);
        let excess = self.recent.len() as i64 - 2 * self.recent_keep as i64;
        if excess > 0 {
            let cut = excess as usize + self.recent_keep;
            self.recent.drain(..cut);
            self.recent_start += cut as i64;
        }
    }

    fn check_old(&mut self, off: i64, data: &[u8]) {
        self.stats.duplicate_bytes += data.len() as u64;
        let lo = off.max(self.recent_start);
        let hi = (off + data.len() as i64).min(self.recent_start + self.recent.len() as i64);
        if lo < hi {
            let seen =
                &self.recent[(lo - self.recent_start) as usize..(hi - self.recent_start) as usize];
            if seen != &data[(lo - off) as usize..(hi - off) as usize] {
                self.stats.conflicts += 1;
            }
        }
    }

    /// Store bytes that wait for earlier ones, keeping the first copy of every byte.
    fn insert(&mut self, off: i64, data: &[u8], ts: u64) {
        let end = off + data.len() as i64;
        let mut pieces: Vec<(i64, &[u8])> = Vec::new();
        let mut cur = off;
        let mut conflict = false;
        let mut dup = 0u64;
        // waiting ranges that may overlap [off, end): from the last one starting at or
        // before `off`
        let first = self.pending.range(..=off).next_back().map(|(s, _)| *s);
        let from = first.unwrap_or(off);
        let ranges: Vec<(i64, i64)> = self
            .pending
            .range(from..end)
            .map(|(s, (d, _))| (*s, *s + d.len() as i64))
            .collect();
        let mut i = 0;
        while cur < end {
            while i < ranges.len() && ranges[i].1 <= cur {
                i += 1;
            }
            if i >= ranges.len() || ranges[i].0 >= end {
                pieces.push((cur, &data[(cur - off) as usize..]));
                break;
            }
            let (s, e) = ranges[i];
            if s > cur {
                pieces.push((cur, &data[(cur - off) as usize..(s - off) as usize]));
                cur = s;
            }
            let hi = e.min(end);
            let old = &self.pending[&s].0[(cur - s) as usize..(hi - s) as usize];
            if old != &data[(cur - off) as usize..(hi - off) as usize] {
                conflict = true;
            }
            dup += (hi - cur) as u64;
            cur = hi;
        }
        self.stats.duplicate_bytes += dup;
        if conflict {
            self.stats.conflicts += 1;
        }
        for (start, piece) in pieces {
            if !piece.is_empty() {
                self.pending_bytes += piece.len() as u64;
                self.pending.insert(start, (piece.to_vec(), ts));
            }
        }
    }

    /// Deliver waiting ranges that now start at the next expected byte.
    fn drain(&mut self, out: &mut Vec<Event>) {
        while let Some(entry) = self.pending.first_entry() {
            let s = *entry.key();
            if s > self.next_offset {
                break;
            }
            let (mut data, ts) = entry.remove();
            self.pending_bytes -= data.len() as u64;
            if s < self.next_offset {
                let cut = ((self.next_offset - s) as usize).min(data.len());
                data.drain(..cut);
            }
            if !data.is_empty() {
                self.deliver_new(&data);
                out.push(Event::Chunk { data, ts });
            }
        }
    }

    /// Declare the bytes from the next expected one up to `target` lost.
    fn skip_to(&mut self, target: i64, ts: u64, out: &mut Vec<Event>) {
        let size = target - self.next_offset;
        if size <= 0 {
            return;
        }
        out.push(Event::Gap {
            size: size as u64,
            ts,
        });
        self.next_offset = target;
        self.stats.gaps += 1;
        self.stats.gap_bytes += size as u64;
        self.recent.clear();
        self.recent_start = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(ev: &[Event]) -> Vec<u8> {
        let mut v = Vec::new();
        for e in ev {
            if let Event::Chunk { data, .. } = e {
                v.extend_from_slice(data);
            }
        }
        v
    }

    #[test]
    fn out_of_order_overlap_and_wrap() {
        let mut s = TcpStream::new(1 << 20);
        s.start(0xFFFF_FFFE);
        let mut out = Vec::new();
        s.segment(2, b"efgh", 1, &mut out); // wraps: offset 4
        assert!(out.is_empty());
        s.segment(0xFFFF_FFFE, b"abcdef", 2, &mut out); // overlaps "ef"
        assert_eq!(chunks(&out), b"abcdefgh");
        assert_eq!(s.stats.out_of_order, 1);
        assert_eq!(s.stats.duplicate_bytes, 2);
        s.segment(0xFFFF_FFFE, b"abXd", 3, &mut out);
        assert_eq!(s.stats.conflicts, 1);
    }

    #[test]
    fn acks_and_flush_report_gaps() {
        let mut s = TcpStream::new(1 << 20);
        s.start(100);
        let mut out = Vec::new();
        s.segment(110, b"xyz", 1, &mut out);
        s.acked(105, 2, &mut out);
        assert_eq!(out, vec![Event::Gap { size: 5, ts: 2 }]);
        out.clear();
        s.fin(113, 0);
        s.flush(3, &mut out);
        assert_eq!(out[0], Event::Gap { size: 5, ts: 3 });
        assert_eq!(chunks(&out), b"xyz");
    }
}
