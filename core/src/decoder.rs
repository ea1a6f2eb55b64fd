//! Ring-buffer records in, encoded RRPairs out: connections, ordered streams, the HTTP/1.x
//! stitcher and the RRPair encoders, as agent/capture.py's record loop does in Python.
//!
//! Bytes only Python can get (sendfile's, read back from the file) stop `feed_records` at
//! their record; Python reads them and gives them to `feed_sendfile`, then feeds on. With
//! `hold` (the live capture), each connection's exchanges wait for the context Python sets
//! once (`set_context`, after enrichment and the port filter) or are dropped (`drop_conn`);
//! the OPEN/ADDR/CLOSE records go out to Python (`control`) so that it never walks data.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use prost::Message as _;

use crate::build::build;
use crate::layout::{self, ConnEvent, DataEvent, Record};
use crate::pb;
use crate::stitch::{Exchange, Stitcher};
use crate::stream::{Chunk, OrderedStream};

/// Names of the counters `counters()` returns, in order.
pub const COUNTER_NAMES: &[&str] = &[
    "records",
    "data_records",
    "gap_records",
    "control_records",
    "sendfile_records",
    "invalid_records",
    "records_untracked",
    "orphan_records",
    "conns_tracked",
    "conns_not_http",
    "conns_upgraded",
    "stream_gaps",
    "stream_gap_bytes",
    "stream_duplicate_bytes",
    "parse_errors",
    "rrpairs",
    "rrpairs_incomplete",
    "rrpairs_gap",
    "rrpairs_truncated",
    "rrpairs_noaddr",
    "rrpairs_held_over",
    "panics",
    "tls_records",
    "conns_tls",
    // HTTP/2 (src/h2)
    "conns_h2",
    "h2_frames",
    "h2_streams",
    "h2_streams_dropped",
    "h2_frames_stale",
    "h2_resets",
    "h2_goaways",
    "h2_bad_frames",
    "h2_conns_failed",
    "h2_header_blocks_too_large",
    "h2_blocks_unknown_entries",
    "h2_hpack_errors",
    "h2_header_lists_too_large",
    "h2_tables_rebuilt",
];

/// What one RRPair is built from: an HTTP/1 exchange or an HTTP/2 stream.
// Moved once from parser to encoder (held at most MAX_HELD per connection): boxing the
// larger variant would cost an allocation per exchange on the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    H1(Exchange),
    H2(crate::h2::exchange::Stream),
}

/// Exchanges held per connection while its context is not set; then they go out with the
/// core's own template, flagged `noaddr`. Python sets a context after the batch that
/// opened the connection, so one ring batch must fit: an HTTP/2 connection completes up
/// to 1,024 streams in a burst (h2load: 100 in one batch). Each is bounded by max_body.
pub const MAX_HELD: usize = 1024;

#[derive(Debug, Default, Clone)]
pub struct Counters(pub BTreeMap<&'static str, u64>);

impl Counters {
    fn add(&mut self, name: &'static str, n: u64) {
        *self.0.entry(name).or_insert(0) += n;
    }
}

struct Conn {
    req_dir: u8,
    streams: [OrderedStream; 2],
    stitcher: Stitcher,
    /// The RRPair every exchange of this connection starts from (direction, client,
    /// server, meta, connection-wide flags).
    template: pb::RrPair,
    from_python: bool,
    h2: crate::h2::State,
    /// Its records are TLS plaintext (NT_EV_TLS_*: agent/tls/records.py): streams whose
    /// offsets count plaintext, ended by their last record, not by the CLOSE's counts.
    tls: bool,
    /// Opened before the capture: its streams may begin mid-message.
    preexisting: bool,
    /// Per direction: wall-clock ns of the latest loss no message begun after it has
    /// followed yet, else 0 (agent/gap_marks.py).
    open_gaps: [u64; 2],
}

impl Conn {
    /// gap_marks.note_exchange: a message begun at or after a loss closes it.
    fn note_exchange(&mut self, ex: &Exchange) {
        let rq = usize::from(self.req_dir);
        if let Some(r) = &ex.request {
            if self.open_gaps[rq] != 0 && r.start_ts_ns >= self.open_gaps[rq] {
                self.open_gaps[rq] = 0;
            }
        }
        if let Some(r) = &ex.response {
            if self.open_gaps[rq ^ 1] != 0 && r.start_ts_ns >= self.open_gaps[rq ^ 1] {
                self.open_gaps[rq ^ 1] = 0;
            }
        }
    }

    /// gap_marks.flag_unanswered: the side an exchange flushed at the end lacks lost bytes.
    fn flag_unanswered(&self, ex: &mut Exchange) {
        let rq = usize::from(self.req_dir);
        if (ex.response.is_none() && self.open_gaps[rq ^ 1] != 0)
            || (ex.request.is_none() && self.open_gaps[rq] != 0)
        {
            ex.flags.insert("gap");
        }
    }
}

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
    /// Connections whose RRPairs carry meta.source "tls".
    tls: HashSet<u64>,
    pub counters: Counters,
    pub out_pb: Vec<Vec<u8>>,
    pub out_jsonl: Vec<Vec<u8>>,
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
            control: Vec::new(),
            stopped: Vec::new(),
            orphans: Vec::new(),
            panic_conn: None,
        }
    }

    /// The context of a connection (an RRPair holding direction, client, server, meta and
    /// connection-wide flags). Without `hold` it replaces the one built from its OPEN
    /// record; with `hold` it releases the exchanges held for it.
    pub fn set_context(&mut self, conn_id: u64, template: pb::RrPair) {
        if self.hold {
            let held = self.held.remove(&conn_id).map(|h| h.1).unwrap_or_default();
            for ex in held {
                self.emit(conn_id, &template, ex);
            }
            if self.conns.contains_key(&conn_id) {
                self.contexts.insert(conn_id, template);
            } else {
                self.tls.remove(&conn_id);
            }
            return;
        }
        match self.conns.get_mut(&conn_id) {
            Some(c) => {
                c.template = template;
                c.from_python = true;
            }
            None => {
                self.early.insert(conn_id, template);
            }
        }
    }

    /// Forget a connection (filtered out, untracked by Python): nothing more of it comes out.
    pub fn drop_conn(&mut self, conn_id: u64) {
        self.held.remove(&conn_id);
        self.tls.remove(&conn_id);
        self.contexts.remove(&conn_id);
        self.holey.remove(&conn_id);
        self.conns.remove(&conn_id);
        self.untracked.insert(conn_id);
    }

    /// hold: connections with exchanges waiting for a context.
    pub fn waiting_contexts(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.held.keys().copied().collect();
        ids.sort_unstable();
        ids
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

    fn sendfile(
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
    fn skip_in_order(&mut self, cid: u64, dir: usize, off: u64, size: u64, ts: u64) -> bool {
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

    /// TLS plaintext: the first record of a connection switches it to fresh plaintext
    /// streams and parser (ciphertext seen before the programs knew is dropped); then the
    /// record is handled as the DATA or GAP record it stands for.
    fn on_tls(&mut self, d: &DataEvent<'_>) {
        self.counters.add("tls_records", 1);
        let max_body = self.max_body;
        if let Some(conn) = self.conns.get_mut(&d.conn_id) {
            if !conn.tls {
                conn.tls = true;
                conn.streams = [OrderedStream::default(), OrderedStream::default()];
                conn.stitcher = Stitcher::new(max_body);
                if conn.preexisting {
                    conn.stitcher.resync_start();
                }
                conn.h2 = crate::h2::State::default();
                conn.open_gaps = [0, 0];
                self.holey.remove(&d.conn_id);
                self.tls.insert(d.conn_id);
                self.counters.add("conns_tls", 1);
            }
        }
        let mut plain = *d;
        if d.kind == layout::NT_EV_TLS_DATA {
            plain.kind = layout::NT_EV_DATA;
            self.on_data(&plain);
        } else {
            plain.kind = layout::NT_EV_GAP;
            self.on_gap(&plain);
        }
    }

    fn on_data(&mut self, d: &DataEvent<'_>) {
        self.counters.add("data_records", 1);
        if !self.conns.contains_key(&d.conn_id) {
            if self.untracked.contains(&d.conn_id) {
                self.counters.add("records_untracked", 1);
            } else {
                // Python looks its OPEN up in /proc (adopt_orphan), then feeds an OPEN
                self.counters.add("orphan_records", 1);
                if self.hold {
                    self.orphans.push((d.conn_id, d.tgid, d.fd, d.ts_ns));
                    self.untracked.insert(d.conn_id);
                }
            }
            return;
        }
        let dir = usize::from(d.dir & 1);
        if self.holey.contains(&d.conn_id) {
            self.flush_other(d.conn_id, dir);
        }
        let Some(conn) = self.conns.get_mut(&d.conn_id) else {
            return;
        };
        let chunks = conn.streams[dir].push(d.offset, d.data, d.ts_ns);
        if conn.streams[dir].waiting() {
            self.holey.insert(d.conn_id);
        }
        self.feed_chunks(d.conn_id, dir, chunks);
    }

    fn on_gap(&mut self, d: &DataEvent<'_>) {
        self.counters.add("gap_records", 1);
        if !self.conns.contains_key(&d.conn_id) {
            return;
        }
        let dir = usize::from(d.dir & 1);
        if self.holey.contains(&d.conn_id) {
            self.flush_other(d.conn_id, dir);
        }
        if d.syscall & layout::NT_GAP_BOUND != 0
            && self.skip_in_order(d.conn_id, dir, d.offset, u64::from(d.len), d.ts_ns)
        {
            return;
        }
        let Some(conn) = self.conns.get_mut(&d.conn_id) else {
            return;
        };
        let s = &mut conn.streams[dir];
        let chunks = if d.len > 0 {
            s.push_gap(d.offset, u64::from(d.len), d.ts_ns)
        } else {
            s.unknown_gap(d.ts_ns)
        };
        if s.waiting() {
            self.holey.insert(d.conn_id);
        }
        self.feed_chunks(d.conn_id, dir, chunks);
    }

    fn on_open(&mut self, c: &ConnEvent) {
        let server = c.role == layout::NT_ROLE_SERVER;
        let (local, remote) = (endpoint(&c.laddr, c.lport), endpoint(&c.raddr, c.rport));
        let (client, srv) = if server {
            (remote, local)
        } else {
            (local, remote)
        };
        let comm_len = c.comm.iter().position(|&b| b == 0).unwrap_or(16);
        let template = pb::RrPair {
            direction: if server { pb::INBOUND } else { pb::OUTBOUND },
            client: Some(client),
            server: Some(srv),
            meta: Some(pb::Meta {
                pid: c.tgid,
                comm: String::from_utf8_lossy(&c.comm[..comm_len]).into_owned(),
                source: "syscall".into(),
                conn_id: c.conn_id,
                ..pb::Meta::default()
            }),
            ..pb::RrPair::default()
        };
        let (template, from_python) = match self.early.remove(&c.conn_id) {
            Some(t) => (t, true),
            None => (template, false),
        };
        let req_dir = if c.role == layout::NT_ROLE_CLIENT {
            layout::NT_DIR_EGRESS
        } else {
            layout::NT_DIR_INGRESS
        };
        self.conns.insert(
            c.conn_id,
            Conn {
                req_dir,
                streams: [OrderedStream::default(), OrderedStream::default()],
                stitcher: Stitcher::new(self.max_body),
                template,
                from_python,
                h2: crate::h2::State::default(),
                tls: false,
                preexisting: c.family & layout::NT_FAMILY_PREEXISTING != 0,
                open_gaps: [0, 0],
            },
        );
        if c.family & layout::NT_FAMILY_PREEXISTING != 0 {
            if let Some(conn) = self.conns.get_mut(&c.conn_id) {
                conn.stitcher.resync_start();
            }
        }
        self.untracked.remove(&c.conn_id);
        self.counters.add("conns_tracked", 1);
    }

    fn on_addr(&mut self, c: &ConnEvent) {
        if let Some(t) = self.contexts.get_mut(&c.conn_id) {
            // hold: exchanges went out without addresses (held too long): the rest have
            // them (agent/capture_addresses.py _on_addr)
            if t.flags.iter().any(|f| f == "noaddr") && c.role == layout::NT_ROLE_SERVER {
                t.server = Some(endpoint(&c.laddr, c.lport));
                if c.rport != 0 {
                    t.client = Some(endpoint(&c.raddr, c.rport));
                    t.flags.retain(|f| f != "noaddr");
                }
            }
        }
        let Some(conn) = self.conns.get_mut(&c.conn_id) else {
            return;
        };
        if conn.from_python {
            return;
        }
        let local = endpoint(&c.laddr, c.lport);
        if c.role == layout::NT_ROLE_SERVER {
            conn.template.server = Some(local);
            if c.rport != 0 {
                conn.template.client = Some(endpoint(&c.raddr, c.rport));
            }
        } else {
            conn.template.client = Some(local);
        }
    }

    fn on_close(&mut self, c: &ConnEvent) {
        if !self.conns.contains_key(&c.conn_id) {
            return;
        }
        self.holey.remove(&c.conn_id);
        let req = self
            .conns
            .get(&c.conn_id)
            .map_or(0, |conn| usize::from(conn.req_dir));
        for dir in [req, req ^ 1] {
            // requests first (causal order)
            let chunks = match self.conns.get_mut(&c.conn_id) {
                // TLS: the CLOSE counts ciphertext; the plaintext ends at its last record
                Some(conn) if conn.tls => {
                    let mut out = Vec::new();
                    while conn.streams[dir].waiting() {
                        out.extend(conn.streams[dir].declare_gap());
                    }
                    out
                }
                // records queued behind a hole are delivered, not skipped with it
                Some(conn) => conn.streams[dir].close_at(c.off[dir], c.ts_ns),
                None => return,
            };
            self.feed_chunks(c.conn_id, dir, chunks);
        }
        self.finish(c.conn_id, c.ts_ns);
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

    /// Exchanges of a live connection: gap marks, then out.
    fn emit_all(&mut self, cid: u64, out: Vec<Exchange>) {
        if out.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        for ex in &out {
            conn.note_exchange(ex);
        }
        let template = conn.template.clone();
        for ex in out {
            self.emit_for(cid, &template, Item::H1(ex));
        }
    }

    /// hold: with the context Python set, or held until it does (at most MAX_HELD, then
    /// out with the core's template, flagged `noaddr`).
    fn emit_for(&mut self, cid: u64, own: &pb::RrPair, ex: Item) {
        if !self.hold {
            return self.emit(cid, own, ex);
        }
        if let Some(t) = self.contexts.get(&cid) {
            let t = t.clone();
            return self.emit(cid, &t, ex);
        }
        let entry = self
            .held
            .entry(cid)
            .or_insert_with(|| (own.clone(), Vec::new()));
        entry.1.push(ex);
        if entry.1.len() > MAX_HELD {
            let (mut t, held) = self.held.remove(&cid).unwrap_or_default();
            t.flags.push("noaddr".into());
            self.counters.add("rrpairs_held_over", held.len() as u64);
            for ex in held {
                self.emit(cid, &t, ex);
            }
            if self.conns.contains_key(&cid) {
                self.contexts.insert(cid, t);
            }
        }
    }

    /// HTTP/2 (src/h2): a connection whose first bytes are the client preface (or frames,
    /// joined mid-way) goes to the HTTP/2 decoder instead of the stitcher. `ch` None: the
    /// connection ends. Returns whether the connection is HTTP/2.
    fn h2(&mut self, cid: u64, dir: usize, ch: Option<&Chunk>) -> bool {
        use crate::h2::{conn, State};
        let max_body = self.max_body;
        let Some(c) = self.conns.get_mut(&cid) else {
            return false;
        };
        let is_req = dir == usize::from(c.req_dir);
        if let (State::Undecided, Some(Chunk { data: Some(d), .. })) = (&c.h2, ch) {
            c.h2 = match crate::h2::detect(d, is_req, max_body) {
                Some(h) => State::Yes(h),
                None => State::No,
            };
            if matches!(c.h2, State::Yes(_)) {
                self.counters.add("conns_h2", 1);
            }
        }
        let State::Yes(h) = &mut c.h2 else {
            return false;
        };
        let side = if is_req { conn::CLIENT } else { conn::SERVER };
        let mut out = Vec::new();
        match ch {
            Some(Chunk {
                data: Some(d),
                ts_ns,
                ..
            }) => h.feed(side, d, wall(*ts_ns, self.mono_to_wall), &mut out),
            Some(g) => h.gap(side, g.size, wall(g.ts_ns, self.mono_to_wall)),
            None => h.close(&mut out),
        }
        let counts = std::mem::take(&mut h.counts);
        let template = if out.is_empty() {
            pb::RrPair::default()
        } else {
            c.template.clone()
        };
        for (k, v) in counts {
            self.counters.add(k, v);
        }
        for st in out {
            self.emit_for(cid, &template, Item::H2(st));
        }
        true
    }

    /// `Upgrade: h2c` answered 101: the connection goes on as HTTP/2 (src/h2), from the
    /// bytes that followed the upgrade in each direction.
    fn h2_upgrade(&mut self, cid: u64, req: crate::h2::conn::Msg, ts_ns: u64) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let (req_rest, res_rest) = c.stitcher.take_rest();
        c.h2 = crate::h2::State::Yes(crate::h2::upgraded(self.max_body, req));
        let req_dir = usize::from(c.req_dir);
        self.counters.add("conns_h2", 1);
        for (dir, rest) in [(req_dir, req_rest), (req_dir ^ 1, res_rest)] {
            if !rest.is_empty() {
                let size = rest.len() as u64;
                let ch = Chunk {
                    data: Some(rest),
                    size,
                    ts_ns,
                };
                self.h2(cid, dir, Some(&ch));
            }
        }
    }

    fn emit(&mut self, cid: u64, template: &pb::RrPair, item: Item) {
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let mut pair = match item {
            Item::H1(ex) => build(template, ex, id),
            Item::H2(st) => crate::h2::rrpair::build(template, st, id, self.max_body),
        };
        if self.tls.contains(&cid) {
            pair.meta.get_or_insert_with(Default::default).source = "tls".into();
        }
        let c = &mut self.counters;
        c.add("rrpairs", 1);
        for (f, name) in [
            ("incomplete", "rrpairs_incomplete"),
            ("gap", "rrpairs_gap"),
            ("truncated", "rrpairs_truncated"),
        ] {
            if pair.flags.iter().any(|x| x == f) {
                c.add(name, 1);
            }
        }
        if template.flags.iter().any(|f| f == "noaddr") {
            c.add("rrpairs_noaddr", 1);
        }
        if self.formats.protobuf {
            self.out_pb.push(pair.encode_to_vec());
        }
        if self.formats.jsonl {
            self.out_jsonl.push(crate::json::dumps(&pair).into_bytes());
        }
    }
}
