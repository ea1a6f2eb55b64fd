//! Ring-buffer records in, encoded RRPairs out: connections, ordered streams, the HTTP/1.x
//! stitcher and the RRPair encoders, as agent/capture.py's record loop does in Python.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use prost::Message as _;

use crate::http1::Message;
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
    "panics",
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
}

/// Output forms.
#[derive(Debug, Clone, Copy)]
pub struct Formats {
    pub protobuf: bool,
    pub jsonl: bool,
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
    pub counters: Counters,
    pub out_pb: Vec<Vec<u8>>,
    pub out_jsonl: Vec<Vec<u8>>,
    /// The test hook: a record of a connection with this id panics inside the core.
    pub panic_conn: Option<u64>,
}

fn wall(ts: u64, off: i64) -> u64 {
    (ts as i64).wrapping_add(off) as u64
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
            counters,
            out_pb: Vec::new(),
            out_jsonl: Vec::new(),
            panic_conn: None,
        }
    }

    /// The context of a connection (an RRPair holding direction, client, server, meta and
    /// connection-wide flags), replacing the one built from its OPEN record.
    pub fn set_context(&mut self, conn_id: u64, template: pb::RrPair) {
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

    /// A batch of ring-buffer-format bytes (8-byte record headers included).
    pub fn feed_records(&mut self, blob: &[u8]) {
        for rec in layout::records(blob) {
            self.counters.add("records", 1);
            let rec = layout::decode(rec);
            let cid = match &rec {
                Record::Data(d) => d.conn_id,
                Record::Conn(c) => c.conn_id,
                Record::Invalid => {
                    self.counters.add("invalid_records", 1);
                    continue;
                }
            };
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
    }

    /// A panic inside the core: count it, forget the connection, go on with the others.
    fn on_panic(&mut self, cid: u64) {
        self.counters.add("panics", 1);
        self.conns.remove(&cid);
        self.holey.remove(&cid);
        self.untracked.insert(cid);
    }

    fn handle(&mut self, rec: &Record<'_>) {
        match rec {
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

    fn on_data(&mut self, d: &DataEvent<'_>) {
        self.counters.add("data_records", 1);
        if !self.conns.contains_key(&d.conn_id) {
            if self.untracked.contains(&d.conn_id) {
                self.counters.add("records_untracked", 1);
            } else {
                // Python looks its OPEN up in /proc (adopt_orphan); the core cannot
                self.counters.add("orphan_records", 1);
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
        let local = pb::Endpoint {
            ip: layout::ip_text(&c.laddr),
            port: u32::from(c.lport),
        };
        let remote = pb::Endpoint {
            ip: layout::ip_text(&c.raddr),
            port: u32::from(c.rport),
        };
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
            },
        );
        self.untracked.remove(&c.conn_id);
        self.counters.add("conns_tracked", 1);
    }

    fn on_addr(&mut self, c: &ConnEvent) {
        let Some(conn) = self.conns.get_mut(&c.conn_id) else {
            return;
        };
        if conn.from_python {
            return;
        }
        let server = c.role == layout::NT_ROLE_SERVER;
        let local = pb::Endpoint {
            ip: layout::ip_text(&c.laddr),
            port: u32::from(c.lport),
        };
        if server {
            conn.template.server = Some(local);
            if c.rport != 0 {
                let remote = pb::Endpoint {
                    ip: layout::ip_text(&c.raddr),
                    port: u32::from(c.rport),
                };
                conn.template.client = Some(remote);
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
        if conn.stitcher.failed() || conn.stitcher.upgraded {
            return;
        }
        let mut out = Vec::new();
        conn.stitcher.close(wall(ts, self.mono_to_wall), &mut out);
        self.counters
            .add("parse_errors", conn.stitcher.parse_errors());
        for ex in out {
            self.emit(&conn.template, ex);
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
        let template = if out.is_empty() {
            None
        } else {
            Some(conn.template.clone())
        };
        if let Some(t) = template {
            for ex in out {
                self.emit(&t, ex);
            }
        }
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
        }
    }

    /// HTTP/2 (src/h2): a connection whose first bytes are the client preface (or frames,
    /// joined mid-way) goes to the HTTP/2 decoder instead of the stitcher. `ch` None: the
    /// connection ends. Returns whether the connection is HTTP/2.
    fn h2(&mut self, cid: u64, dir: usize, ch: Option<&Chunk>) -> bool {
        use crate::h2::{conn, rrpair, State};
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
            self.next_id += 1;
            let id = format!("{}-{}", self.id_prefix, self.next_id);
            let pair = rrpair::build(&template, st, id, max_body);
            self.counters.add("rrpairs", 1);
            for f in ["incomplete", "gap", "truncated"] {
                if pair.flags.iter().any(|x| x == f) {
                    self.counters.add(
                        match f {
                            "incomplete" => "rrpairs_incomplete",
                            "gap" => "rrpairs_gap",
                            _ => "rrpairs_truncated",
                        },
                        1,
                    );
                }
            }
            if self.formats.protobuf {
                self.out_pb.push(pair.encode_to_vec());
            }
            if self.formats.jsonl {
                self.out_jsonl.push(crate::json::dumps(&pair).into_bytes());
            }
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

    fn emit(&mut self, template: &pb::RrPair, ex: Exchange) {
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let c = &mut self.counters;
        c.add("rrpairs", 1);
        for f in ["incomplete", "gap", "truncated"] {
            if ex.flags.contains(f) {
                c.add(
                    match f {
                        "incomplete" => "rrpairs_incomplete",
                        "gap" => "rrpairs_gap",
                        _ => "rrpairs_truncated",
                    },
                    1,
                );
            }
        }
        let pair = build(template, ex, id);
        if self.formats.protobuf {
            self.out_pb.push(pair.encode_to_vec());
        }
        if self.formats.jsonl {
            self.out_jsonl.push(crate::json::dumps(&pair).into_bytes());
        }
    }
}

fn headers(hs: Vec<(String, String)>) -> Vec<pb::Header> {
    hs.into_iter()
        .map(|(name, value)| pb::Header { name, value })
        .collect()
}

fn request(m: Message) -> pb::HttpRequest {
    pb::HttpRequest {
        method: m.method,
        url: m.url,
        version: m.version,
        headers: headers(m.headers),
        body: m.body,
        body_size: m.body_size,
        trailers: headers(m.trailers),
    }
}

fn response(m: Message) -> pb::HttpResponse {
    pb::HttpResponse {
        status_code: m.status_code,
        status_message: m.status_message,
        version: m.version,
        headers: headers(m.headers),
        body: m.body,
        body_size: m.body_size,
        trailers: headers(m.trailers),
    }
}

/// One RRPair for one exchange (agent/rrpairs.py build_http_rrpair).
pub fn build(template: &pb::RrPair, ex: Exchange, id: String) -> pb::RrPair {
    let mut pair = template.clone();
    pair.id = id;
    pair.l7protocol = "http".into();
    if pair.client.is_none() {
        pair.client = Some(pb::Endpoint::default());
    }
    if pair.server.is_none() {
        pair.server = Some(pb::Endpoint::default());
    }
    if pair.meta.is_none() {
        pair.meta = Some(pb::Meta::default());
    }
    let start = ex
        .request
        .as_ref()
        .map(|r| r.start_ts_ns)
        .or_else(|| ex.response.as_ref().map(|r| r.start_ts_ns))
        .unwrap_or(0);
    if start != 0 {
        pair.ts = Some(pb::Timestamp {
            seconds: (start / 1_000_000_000) as i64,
            nanos: (start % 1_000_000_000) as i32,
        });
    }
    let us = |a: u64| (a.saturating_sub(start) / 1000) as i64;
    if let Some(res) = &ex.response {
        if start != 0 {
            pair.duration_us = us(res.end_ts_ns);
            pair.ttfb_us = us(res.start_ts_ns);
        }
    } else if let Some(req) = &ex.request {
        if start != 0 {
            pair.duration_us = us(req.end_ts_ns);
        }
    }
    let mut flags: std::collections::BTreeSet<String> =
        ex.flags.iter().map(|f| (*f).to_string()).collect();
    flags.extend(template.flags.iter().cloned());
    pair.flags = flags.into_iter().collect();
    pair.http = Some(pb::HttpExchange {
        req: ex.request.map(request),
        res: ex.response.map(response),
    });
    pair
}
