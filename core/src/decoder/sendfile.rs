//! Bytes only Python can get (sendfile's, read back from the file) and bytes not copied
//! on purpose (past the copy bound), in their place in the stream.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{wall, Decoder};

impl Decoder {
    /// The bytes a sendfile record described (`data`: those read back from the file, a
    /// prefix of the range; None: unreadable, a gap), in their place in the stream
    /// (agent/capture_uncopied.py _on_sendfile).
    pub fn feed_sendfile(
        &mut self,
        cid: u64,
        dir: u8,
        offset: u64,
        length: u64,
        ts: u64,
        data: Option<&[u8]>,
    ) {
        let res = catch_unwind(AssertUnwindSafe(|| {
            self.sendfile(cid, usize::from(dir & 1), offset, length, ts, data)
        }));
        if res.is_err() {
            self.on_panic(cid);
        }
    }

    pub(super) fn sendfile(
        &mut self,
        cid: u64,
        dir: usize,
        offset: u64,
        length: u64,
        ts: u64,
        data: Option<&[u8]>,
    ) {
        if !self.conns.contains_key(&cid) {
            return;
        }
        if self.holey.contains(&cid) {
            self.flush_other(cid, dir);
        }
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        let s = &mut conn.streams[dir];
        let (chunks, rest) = match data {
            None => (s.push_gap(offset, length, ts), 0),
            Some(d) => {
                let d = &d[..d.len().min(length as usize)];
                (s.push(offset, d, ts), length - d.len() as u64)
            }
        };
        self.feed_chunks(cid, dir, chunks);
        let at = offset + length - rest; // the file was shorter than the range: the rest
        if rest > 0 && !self.skip_in_order(cid, dir, at, rest, ts) {
            if let Some(conn) = self.conns.get_mut(&cid) {
                let chunks = conn.streams[dir].push_gap(at, rest, ts);
                self.feed_chunks(cid, dir, chunks);
            }
        }
        if self
            .conns
            .get(&cid)
            .is_some_and(|c| c.streams[dir].waiting())
        {
            self.holey.insert(cid);
        }
    }

    /// Bytes not copied on purpose (past the copy bound): inside a body they only cut it
    /// (truncated). False when the stream is not at `off` (the caller declares a gap).
    pub(super) fn skip_in_order(
        &mut self,
        cid: u64,
        dir: usize,
        off: u64,
        size: u64,
        ts: u64,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return false;
        };
        let s = &mut conn.streams[dir];
        if off != s.next_offset || s.waiting() {
            return false;
        }
        s.next_offset += size;
        let ts = wall(ts, self.mono_to_wall);
        let mut out = Vec::new();
        if dir == usize::from(conn.req_dir) {
            conn.stitcher.request_skip(size, ts, &mut out);
        } else {
            conn.stitcher.response_skip(size, ts, &mut out);
        }
        self.emit_all(cid, out);
        true
    }
}
