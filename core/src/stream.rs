//! Ordered bytes of one direction of one connection, with gaps made explicit: the mirror
//! of agent/streams.py (same decisions, same counters).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

/// Bytes in order: `data` None is a gap of `size` bytes (0: unknown size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Option<Vec<u8>>,
    pub size: u64,
    pub ts_ns: u64,
}

#[derive(Debug)]
pub struct OrderedStream {
    pub next_offset: u64,
    pub max_pending_bytes: u64,
    /// offset -> (bytes, or None for bytes known lost; size; ts)
    pending: BTreeMap<u64, (Option<Vec<u8>>, u64, u64)>,
    pending_bytes: u64,
    hole_age: u32,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub duplicate_bytes: u64,
}

impl Default for OrderedStream {
    fn default() -> Self {
        Self {
            next_offset: 0,
            max_pending_bytes: 4 << 20,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            hole_age: 0,
            gaps: 0,
            gap_bytes: 0,
            duplicate_bytes: 0,
        }
    }
}

impl OrderedStream {
    /// Bytes of records waiting behind a hole.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Something (records or known gaps) waits behind a hole.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Add a record; return what is now in order.
    pub fn push(&mut self, offset: u64, data: &[u8], ts_ns: u64) -> Vec<Chunk> {
        let len = data.len() as u64;
        if offset == self.next_offset && self.pending.is_empty() {
            self.next_offset += len;
            return vec![Chunk {
                data: Some(data.to_vec()),
                size: len,
                ts_ns,
            }];
        }
        self.add(offset, Some(data), len, ts_ns)
    }

    /// `size` bytes at `offset` were moved but not copied (a GAP record): a gap in its
    /// place in the order; return what is now in order.
    pub fn push_gap(&mut self, offset: u64, size: u64, ts_ns: u64) -> Vec<Chunk> {
        if size == 0 {
            return Vec::new();
        }
        self.add(offset, None, size, ts_ns)
    }

    fn add(&mut self, mut offset: u64, data: Option<&[u8]>, mut size: u64, ts: u64) -> Vec<Chunk> {
        let mut data = data;
        if offset < self.next_offset {
            // already delivered (or declared a gap): keep only the new tail, if any
            let skip = self.next_offset - offset;
            if skip >= size {
                if data.is_some() {
                    self.duplicate_bytes += size;
                }
                return Vec::new();
            }
            if let Some(d) = data {
                self.duplicate_bytes += skip;
                data = Some(&d[skip as usize..]);
            }
            size -= skip;
            offset = self.next_offset;
        }
        // a second record at the same offset replaces the first
        if let Some((Some(old), _, _)) = self
            .pending
            .insert(offset, (data.map(<[u8]>::to_vec), size, ts))
        {
            self.pending_bytes -= old.len() as u64;
        }
        if data.is_some() {
            self.pending_bytes += size;
        }
        let mut out = self.drain_in_order();
        if self.pending_bytes > self.max_pending_bytes {
            out.extend(self.declare_gap());
        }
        out
    }

    fn drain_in_order(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        // the record at next_offset first (as the Python dict does), then any record
        // that overlaps what was delivered
        loop {
            let at = if self.pending.contains_key(&self.next_offset) {
                self.next_offset
            } else {
                match self.pending.keys().next() {
                    Some(&first) if first < self.next_offset => first,
                    _ => break,
                }
            };
            let Some((mut data, mut size, ts)) = self.pending.remove(&at) else {
                break;
            };
            if let Some(d) = &data {
                self.pending_bytes -= d.len() as u64;
            }
            if at < self.next_offset {
                // overlaps what was delivered: keep only its new tail
                let skip = self.next_offset - at;
                if skip >= size {
                    if data.is_some() {
                        self.duplicate_bytes += size;
                    }
                    continue;
                }
                if let Some(d) = data.take() {
                    self.duplicate_bytes += skip;
                    data = Some(d[skip as usize..].to_vec());
                }
                size -= skip;
            }
            self.next_offset += size;
            if data.is_none() {
                self.gaps += 1;
                self.gap_bytes += size;
            }
            out.push(Chunk {
                data,
                size,
                ts_ns: ts,
            });
        }
        if self.pending.is_empty() {
            self.hole_age = 0;
        }
        out
    }

    /// The hole from next_offset up to `offset` is lost: a gap chunk.
    fn skip_to(&mut self, offset: u64, ts_ns: u64) -> Chunk {
        let missing = offset - self.next_offset;
        self.gaps += 1;
        self.gap_bytes += missing;
        self.next_offset = offset;
        Chunk {
            data: None,
            size: missing,
            ts_ns,
        }
    }

    /// The stream ended after `offset` bytes: deliver every queued record in order,
    /// holes between them as gaps, and the rest up to `offset` as a gap.
    pub fn close_at(&mut self, offset: u64, ts_ns: u64) -> Vec<Chunk> {
        let mut out = Vec::new();
        while !self.pending.is_empty() {
            out.extend(self.declare_gap());
        }
        if offset > self.next_offset {
            out.push(self.skip_to(offset, ts_ns));
        }
        out
    }

    /// Bytes of unknown number were moved without being seen.
    pub fn unknown_gap(&mut self, ts_ns: u64) -> Vec<Chunk> {
        self.gaps += 1;
        vec![Chunk {
            data: None,
            size: 0,
            ts_ns,
        }]
    }

    /// Give up waiting for the first hole.
    pub fn declare_gap(&mut self) -> Vec<Chunk> {
        let Some((&first, (_, _, ts))) = self.pending.iter().next() else {
            return Vec::new();
        };
        let ts = *ts;
        let mut out = Vec::new();
        if first > self.next_offset {
            out.push(self.skip_to(first, ts));
        }
        out.extend(self.drain_in_order());
        out
    }

    /// After each batch: a hole that survived a whole batch is declared a gap.
    pub fn end_of_batch(&mut self) -> Vec<Chunk> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.hole_age += 1;
        if self.hole_age < 2 {
            return Vec::new();
        }
        self.hole_age = 0;
        self.declare_gap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_and_declares_gaps() {
        let mut s = OrderedStream::default();
        assert_eq!(s.push(0, b"ab", 1).len(), 1);
        assert!(s.push(4, b"ef", 3).is_empty());
        let got = s.push(2, b"cd", 2);
        assert_eq!(got.len(), 2);
        assert_eq!(s.next_offset, 6);
        assert!(s.push(8, b"ij", 5).is_empty());
        assert!(s.end_of_batch().is_empty());
        let got = s.end_of_batch();
        assert_eq!(
            got[0],
            Chunk {
                data: None,
                size: 2,
                ts_ns: 5
            }
        );
        assert_eq!(got[1].data.as_deref(), Some(&b"ij"[..]));
        assert_eq!(s.push(0, b"zz", 9), vec![]);
        assert_eq!(s.duplicate_bytes, 2);
    }

    fn sizes(chunks: &[Chunk]) -> Vec<(bool, u64)> {
        chunks.iter().map(|c| (c.data.is_some(), c.size)).collect()
    }

    #[test]
    fn close_delivers_the_records_queued_behind_a_hole() {
        let mut s = OrderedStream::default();
        s.push(0, b"head", 1);
        assert!(s.push(10, b"next", 2).is_empty());
        let got = s.close_at(20, 3);
        assert_eq!(sizes(&got), vec![(false, 6), (true, 4), (false, 6)]);
        assert_eq!(got[1].data.as_deref(), Some(&b"next"[..]));
        assert!(!s.waiting());
    }

    #[test]
    fn a_gap_record_waits_in_its_place() {
        let mut s = OrderedStream::default();
        s.push(0, b"ab", 1);
        assert!(s.push_gap(5, 3, 2).is_empty());
        assert!(s.waiting() && s.pending_bytes() == 0);
        assert!(s.push(8, b"xy", 3).is_empty());
        let got = s.push(2, b"cde", 4);
        assert_eq!(sizes(&got), vec![(true, 3), (false, 3), (true, 2)]);
    }
}
