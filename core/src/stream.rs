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
    pending: BTreeMap<u64, (Vec<u8>, u64)>,
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
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Add a record; return what is now in order.
    pub fn push(&mut self, mut offset: u64, data: &[u8], ts_ns: u64) -> Vec<Chunk> {
        let len = data.len() as u64;
        if offset == self.next_offset && self.pending.is_empty() {
            self.next_offset += len;
            return vec![Chunk {
                data: Some(data.to_vec()),
                size: len,
                ts_ns,
            }];
        }
        let mut data = data;
        if offset < self.next_offset {
            let skip = self.next_offset - offset;
            if skip >= len {
                self.duplicate_bytes += len;
                return Vec::new();
            }
            self.duplicate_bytes += skip;
            data = &data[skip as usize..];
            offset = self.next_offset;
        }
        // a second record at the same offset replaces the first (as the dict does)
        if let Some((old, _)) = self.pending.insert(offset, (data.to_vec(), ts_ns)) {
            self.pending_bytes -= old.len() as u64;
        }
        self.pending_bytes += data.len() as u64;
        let mut out = self.drain_in_order();
        if self.pending_bytes > self.max_pending_bytes {
            out.extend(self.declare_gap());
        }
        out
    }

    fn drain_in_order(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        while let Some((data, ts)) = self.pending.remove(&self.next_offset) {
            let n = data.len() as u64;
            self.pending_bytes -= n;
            self.next_offset += n;
            out.push(Chunk {
                data: Some(data),
                size: n,
                ts_ns: ts,
            });
        }
        if self.pending.is_empty() {
            self.hole_age = 0;
        }
        out
    }

    /// Bytes up to `offset` are known to be lost.
    pub fn gap_to(&mut self, offset: u64, ts_ns: u64) -> Vec<Chunk> {
        let mut out = Vec::new();
        if offset > self.next_offset {
            let missing = offset - self.next_offset;
            self.gaps += 1;
            self.gap_bytes += missing;
            out.push(Chunk {
                data: None,
                size: missing,
                ts_ns,
            });
            self.next_offset = offset;
            let stale: Vec<u64> = self.pending.range(..offset).map(|(k, _)| *k).collect();
            for off in stale {
                if let Some((data, ts)) = self.pending.remove(&off) {
                    self.pending_bytes -= data.len() as u64;
                    let end = off + data.len() as u64;
                    if end > offset {
                        let tail = data[(offset - off) as usize..].to_vec();
                        self.pending_bytes += tail.len() as u64;
                        self.pending.insert(offset, (tail, ts));
                    }
                }
            }
        }
        out.extend(self.drain_in_order());
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
        let Some((&first, (_, ts))) = self.pending.iter().next() else {
            return Vec::new();
        };
        let ts = *ts;
        self.gap_to(first, ts)
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
}
