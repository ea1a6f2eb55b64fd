//! Ring-buffer records in, encoded RRPairs out: connections, ordered streams, the HTTP/1.x
//! stitcher and the RRPair encoders, as agent/capture.py's record loop does in Python.
//!
//! Bytes only Python can get (sendfile's, read back from the file) stop `feed_records` at
//! their record; Python reads them and gives them to `feed_sendfile`, then feeds on. With
//! `hold` (the live capture), each connection's exchanges wait for the context Python sets
//! once (`set_context`, after enrichment and the port filter) or are dropped (`drop_conn`);
//! the OPEN/ADDR/CLOSE records go out to Python (`control`) so that it never walks data.
//!
//! The `Decoder` here feeds records and ends connections; its other parts, one job each:
//!
//! - `counters`: the counters' names and values
//! - `conn`: one tracked connection (streams, stitcher, template, gap marks)
//! - `events`: DATA, GAP, OPEN, ADDR and CLOSE records of a connection
//! - `sendfile`: bytes read back by Python, bytes not copied past the copy bound
//! - `tls`: TLS plaintext records (the switch to plaintext streams)
//! - `h2_hook`: HTTP/2 detection, feeding and the `Upgrade: h2c` switch (src/h2)
//! - `hold`: exchanges waiting for Python's context (`set_context`, `drop_conn`)
//! - `output`: one RRPair built, counted, through the edge rules (`set_rules`), encoded
#![forbid(unsafe_code)]

mod conn;
mod counters;
mod events;
mod h2_hook;
mod hold;
mod output;
mod sendfile;
mod tls;

pub use counters::{Counters, COUNTER_NAMES};
pub use hold::{Item, MAX_HELD};

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use conn::Conn;

use crate::layout::Record;
use crate::stream::Chunk;
use crate::{layout, pb};

/// Output forms.
#[derive(Debug, Clone, Copy)]
pub struct Formats {
    pub protobuf: bool,
    pub jsonl: bool,
}

/// Where `feed_records` stopped: a sendfile record of a tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// The record's payload starts here in the batch.
    pub record: usize,
    /// Feed on from here.
    pub next: usize,
}

pub struct Decoder {
    max_body: u64,
    mono_to_wall: i64,
    id_prefix: String,
    next_id: u64,
    formats: Formats,
    conns: HashMap<u64, Conn>,
    /// contexts given before the connection's OPEN record was seen
    early: HashMap<u64, pb::RrPair>,
    untracked: HashSet<u64>,
    holey: HashSet<u64>,
    /// hold: exchanges wait for their connection's context
    pub hold: bool,
    contexts: HashMap<u64, pb::RrPair>,
    held: HashMap<u64, (pb::RrPair, Vec<Item>)>,
    /// Connections whose records are TLS plaintext (NT_EV_TLS_*: agent/tls/records.py):
    /// streams whose offsets count plaintext, ended by their last record, not by the
    /// CLOSE's counts; their RRPairs carry meta.source "tls" (kept past the connection's
    /// end while exchanges are held for its context).
    tls: HashSet<u64>,
    pub counters: Counters,
    pub out_pb: Vec<Vec<u8>>,
    pub out_jsonl: Vec<Vec<u8>>,
    /// The edge rules run on each RRPair before it is encoded (drop, sample, redact).
    rules: Option<Arc<crate::rules::Rules>>,
    /// hold: OPEN/ADDR/CLOSE record payloads, in order
    pub control: Vec<Vec<u8>>,
    /// hold: connections the core stopped decoding (not HTTP, upgraded, panicked)
    pub stopped: Vec<u64>,
    /// hold: (conn_id, tgid, fd, ts) of data records of unknown connections, once each
    pub orphans: Vec<(u64, u32, u32, u64)>,
    /// The test hook: a record of a connection with this id panics inside the core.
    pub panic_conn: Option<u64>,
}

fn wall(ts: u64, off: i64) -> u64 {
    (ts as i64).wrapping_add(off) as u64
}

fn endpoint(addr: &[u8; 16], port: u16) -> pb::Endpoint {
    pb::Endpoint {
        ip: layout::ip_text(addr),
        port: u32::from(port),
    }
}

impl Decoder {
    pub fn new(max_body: u64, mono_to_wall: i64, id_prefix: String, formats: Formats) -> Self {
        let mut counters = Counters::default();
        for n in COUNTER_NAMES {
            counters.0.insert(n, 0);
        }
        Self {
            max_body,
            mono_to_wall,
            id_prefix,
            next_id: 0,
            formats,
            conns: HashMap::new(),
            early: HashMap::new(),
            untracked: HashSet::new(),
            holey: HashSet::new(),
            hold: false,
            contexts: HashMap::new(),
            held: HashMap::new(),
            tls: HashSet::new(),
            counters,
            out_pb: Vec::new(),
            out_jsonl: Vec::new(),
            rules: None,
            control: Vec::new(),
            stopped: Vec::new(),
            orphans: Vec::new(),
            panic_conn: None,
        }
    }

    /// The edge rules every RRPair goes through from now on, before it is encoded (None:
    /// none). RRPairs already encoded are not changed.
    pub fn set_rules(&mut self, rules: Option<Arc<crate::rules::Rules>>) {
        self.rules = rules;
    }

    /// A batch of ring-buffer-format bytes (8-byte record headers included), from byte
    /// `start`. Stops at a sendfile record of a tracked connection (the caller reads its
    /// bytes, calls `feed_sendfile`, then feeds on from `Stop::next`); None at the end.
    pub fn feed_records_from(&mut self, blob: &[u8], start: usize) -> Option<Stop> {
        for (at, next, rec) in layout::records_from(blob, start) {
            self.counters.add("records", 1);
            let raw = rec;
            let rec = layout::decode(raw);
            let cid = match &rec {
                Record::Data(d) => d.conn_id,
                Record::Conn(c) => {
                    if self.hold {
                        self.control.push(raw.to_vec());
                    }
                    c.conn_id
                }
                Record::Invalid => {
                    self.counters.add("invalid_records", 1);
                    continue;
                }
            };
            if let Record::Data(d) = &rec {
                if d.kind == layout::NT_EV_SENDFILE {
                    self.counters.add("sendfile_records", 1);
                    if self.conns.contains_key(&cid) && self.panic_conn != Some(cid) {
                        return Some(Stop { record: at, next });
                    }
                    continue;
                }
            }
            let hook = self.panic_conn;
            let res = catch_unwind(AssertUnwindSafe(|| {
                if hook == Some(cid) {
                    panic!("test hook: panic on connection {cid}");
                }
                self.handle(&rec)
            }));
            if res.is_err() {
                self.on_panic(cid);
            }
        }
        let holey: Vec<u64> = self.holey.iter().copied().collect();
        for cid in holey {
            let res = catch_unwind(AssertUnwindSafe(|| self.end_of_batch(cid)));
            if res.is_err() {
                self.on_panic(cid);
            }
        }
        None
    }

    /// A whole batch without sendfile records to resolve (they become gaps).
    pub fn feed_records(&mut self, blob: &[u8]) {
        let mut start = 0;
        while let Some(stop) = self.feed_records_from(blob, start) {
            if let Record::Data(d) = layout::decode(&blob[stop.record..]) {
                self.feed_sendfile(d.conn_id, d.dir, d.offset, u64::from(d.len), d.ts_ns, None);
            }
            start = stop.next;
        }
    }

    /// A panic inside the core: count it, forget the connection, go on with the others.
    fn on_panic(&mut self, cid: u64) {
        self.counters.add("panics", 1);
        self.conns.remove(&cid);
        self.holey.remove(&cid);
        self.untracked.insert(cid);
        if self.hold {
            self.stopped.push(cid);
        }
    }

    fn handle(&mut self, rec: &Record<'_>) {
        match rec {
            Record::Data(d)
                if d.kind == layout::NT_EV_TLS_DATA || d.kind == layout::NT_EV_TLS_GAP =>
            {
                self.on_tls(d)
            }
            Record::Data(d) if d.kind == layout::NT_EV_DATA => self.on_data(d),
            Record::Data(d) => self.on_gap(d),
            Record::Conn(c) => {
                self.counters.add("control_records", 1);
                match c.kind {
                    layout::NT_EV_OPEN => self.on_open(c),
                    layout::NT_EV_CLOSE => self.on_close(c),
                    _ => self.on_addr(c),
                }
            }
            Record::Invalid => {}
        }
    }

    /// The connection ended (or the capture stops): emit what it still holds.
    fn finish(&mut self, cid: u64, ts: u64) {
        for dir in 0..2 {
            let chunks = match self.conns.get_mut(&cid) {
                Some(conn) => conn.streams[dir].declare_gap(),
                None => return,
            };
            self.feed_chunks(cid, dir, chunks);
        }
        self.h2(cid, 0, None);
        let Some(mut conn) = self.conns.remove(&cid) else {
            return;
        };
        self.holey.remove(&cid);
        let dup = conn.streams[0].duplicate_bytes + conn.streams[1].duplicate_bytes;
        self.counters.add("stream_duplicate_bytes", dup);
        if !(conn.stitcher.failed() || conn.stitcher.upgraded) {
            let mut out = Vec::new();
            conn.stitcher.close(wall(ts, self.mono_to_wall), &mut out);
            self.counters
                .add("parse_errors", conn.stitcher.parse_errors());
            for mut ex in out {
                conn.flag_unanswered(&mut ex);
                conn.note_exchange(&ex);
                self.emit_for(cid, &conn.template, Item::H1(ex));
            }
        }
        self.contexts.remove(&cid);
        if !self.held.contains_key(&cid) {
            self.tls.remove(&cid);
        }
    }

    /// Close every connection (the capture stops).
    pub fn close_all(&mut self, ts: u64) {
        let mut ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for cid in ids {
            let res = catch_unwind(AssertUnwindSafe(|| self.finish(cid, ts)));
            if res.is_err() {
                self.on_panic(cid);
            }
        }
    }

    /// Bytes arrived in direction `dir` while the other direction waits behind a hole:
    /// that hole cannot be filled any more, and the parser must see a request before its
    /// answer, so declare it now (agent/capture.py: _flush_other).
    fn flush_other(&mut self, cid: u64, dir: usize) {
        loop {
            let chunks = match self.conns.get_mut(&cid) {
                Some(conn) if conn.streams[dir ^ 1].waiting() => {
                    conn.streams[dir ^ 1].declare_gap()
                }
                _ => return,
            };
            self.feed_chunks(cid, dir ^ 1, chunks);
        }
    }

    fn end_of_batch(&mut self, cid: u64) {
        for dir in 0..2 {
            let chunks = match self.conns.get_mut(&cid) {
                Some(conn) => conn.streams[dir].end_of_batch(),
                None => {
                    self.holey.remove(&cid);
                    return;
                }
            };
            self.feed_chunks(cid, dir, chunks);
        }
        if let Some(conn) = self.conns.get(&cid) {
            if !conn.streams[0].waiting() && !conn.streams[1].waiting() {
                self.holey.remove(&cid);
            }
        }
    }

    fn feed_chunks(&mut self, cid: u64, dir: usize, chunks: Vec<Chunk>) {
        for ch in chunks {
            if ch.data.is_none() {
                self.counters.add("stream_gaps", 1);
                self.counters.add("stream_gap_bytes", ch.size);
                let w = wall(ch.ts_ns, self.mono_to_wall);
                if let Some(conn) = self.conns.get_mut(&cid) {
                    conn.open_gaps[dir] = conn.open_gaps[dir].max(w);
                }
            }
            self.feed(cid, dir, ch);
        }
    }

    fn feed(&mut self, cid: u64, dir: usize, ch: Chunk) {
        if self.h2(cid, dir, Some(&ch)) {
            return;
        }
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        let ts = wall(ch.ts_ns, self.mono_to_wall);
        let st = &mut conn.stitcher;
        let mut out = Vec::new();
        let is_req = dir == usize::from(conn.req_dir);
        match (is_req, ch.data) {
            (true, None) => st.request_gap(ch.size, ts, &mut out),
            (true, Some(d)) => st.feed_request(&d, ts, &mut out),
            (false, None) => st.response_gap(ch.size, ts, &mut out),
            (false, Some(d)) => st.feed_response(&d, ts, &mut out),
        }
        let failed = st.failed();
        let upgraded = st.upgraded;
        let h2c = out
            .last()
            .filter(|_| upgraded)
            .and_then(crate::h2::upgrade_request);
        self.emit_all(cid, out);
        if let Some(req) = h2c {
            self.h2_upgrade(cid, req, ch.ts_ns);
            return;
        }
        if failed || upgraded {
            self.counters.add(
                if failed {
                    "conns_not_http"
                } else {
                    "conns_upgraded"
                },
                1,
            );
            if let Some(conn) = self.conns.remove(&cid) {
                self.counters
                    .add("parse_errors", conn.stitcher.parse_errors());
            }
            self.holey.remove(&cid);
            self.untracked.insert(cid);
            if self.hold {
                self.stopped.push(cid);
            }
        }
    }
}

#[cfg(test)]
mod tests;
