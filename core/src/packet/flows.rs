//! The flow table: TCP segments in, per-connection ordered bytes out to the sink, with the
//! semantics of agent/packet/flows.py (roles, TIME_WAIT memory of ended flows, idle
//! timeout, max flows, the buffered-bytes bound, the ports filter, every counter).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use super::frame::{Addr, Segment, ACK, FIN, RST, SYN};
use super::reassembly::{Event, TcpStream};
use super::records::Ends;
use super::sink::Sink;

type Key = (Addr, u16, Addr, u16);

/// How long and how many ended flows are remembered (Linux keeps TIME_WAIT for 60 s).
const ENDED_KEEP_NS: u64 = 60 * 1_000_000_000;
const MAX_ENDED: usize = 16384;

const REQUEST_STARTS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"PATCH ",
    b"OPTIONS ",
    b"CONNECT ",
    b"TRACE ",
];

/// The limits of a flow table.
#[derive(Debug, Clone)]
pub struct Limits {
    pub ports: HashSet<u16>,
    pub idle_timeout_ns: u64,
    pub max_flows: usize,
    pub max_buffered: u64,
    pub max_stream_buffer: u64,
}

/// Counters of a flow table (FlowStats).
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    pub segments: u64,
    pub filtered: u64,
    pub ignored: u64,
    pub flows: u64,
    pub midstream: u64,
    pub closed: u64,
    pub evicted_idle: u64,
    pub evicted_limit: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub out_of_order: u64,
    pub duplicate_bytes: u64,
    pub conflicts: u64,
    pub late_segments: u64,
    pub open_flows: u64,
    pub buffered_bytes: u64,
}

struct Flow {
    client_key: Key,
    midstream: bool,
    session: bool,
    c2s: TcpStream,
    s2c: TcpStream,
    last_ts: u64,
    /// the last activity's stamp
    lru: u64,
    /// the stamp this flow is filed under in the LRU map (lags `lru`: re-filed lazily)
    lru_key: u64,
    /// bytes handed out per direction (EGRESS, INGRESS)
    off: [u64; 2],
}

fn rev(k: &Key) -> Key {
    (k.2, k.3, k.0, k.1)
}

pub struct FlowTable {
    lim: Limits,
    by_key: HashMap<Key, u64>,
    flows: HashMap<u64, Flow>,
    /// least recently active first: stamp -> flow id
    lru: BTreeMap<u64, u64>,
    stamp: u64,
    /// flows ended by FIN or RST lately, by both keys -> (when, stamp)
    ended: HashMap<Key, (u64, u64)>,
    ended_order: BTreeMap<u64, Key>,
    next_id: u64,
    buffered: i64,
    now: u64,
    pub stats: FlowStats,
    pub sink: Sink,
    events: Vec<Event>,
}

impl FlowTable {
    pub fn new(sink: Sink, lim: Limits) -> Self {
        Self {
            lim,
            by_key: HashMap::new(),
            flows: HashMap::new(),
            lru: BTreeMap::new(),
            stamp: 0,
            ended: HashMap::new(),
            ended_order: BTreeMap::new(),
            next_id: 1,
            buffered: 0,
            now: 0,
            stats: FlowStats::default(),
            sink,
            events: Vec::new(),
        }
    }

    fn touch(&mut self, id: u64) {
        self.stamp += 1;
        let stamp = self.stamp;
        if let Some(f) = self.flows.get_mut(&id) {
            f.lru = stamp;
        }
    }

    /// The least recently active flow. Activity only restamps a flow; entries filed under
    /// an old stamp are re-filed here when they reach the front (same order, less work).
    fn oldest(&mut self) -> Option<u64> {
        loop {
            let (&key, &id) = self.lru.iter().next()?;
            let f = self.flows.get_mut(&id).expect("filed flow");
            if f.lru == key {
                return Some(id);
            }
            self.lru.remove(&key);
            f.lru_key = f.lru;
            self.lru.insert(f.lru, id);
        }
    }

    /// One decoded TCP segment, in capture order.
    pub fn segment(&mut self, seg: &Segment<'_>, ts: u64) {
        self.stats.segments += 1;
        let ports = &self.lim.ports;
        if !ports.is_empty() && !ports.contains(&seg.sport) && !ports.contains(&seg.dport) {
            self.stats.filtered += 1;
            return;
        }
        if ts > self.now {
            self.now = ts;
        }
        let key: Key = (seg.src, seg.sport, seg.dst, seg.dport);
        let mut fid = self.by_key.get(&key).copied();
        let flags = seg.flags;
        if let Some(id) = fid {
            let f = &self.flows[&id];
            if flags & SYN != 0 && flags & ACK == 0 && key == f.client_key {
                let isn_next = seg.seq.wrapping_add(1);
                if f.c2s.offset_of(isn_next) != 0 || f.midstream {
                    let last = ts;
                    self.close(id, last); // a new connection on the same ports
                    self.stats.closed += 1;
                    fid = None;
                }
            }
        }
        if fid.is_none() && self.ended.contains_key(&key) {
            if flags & SYN != 0 && flags & ACK == 0 {
                self.forget_ended(&key);
            } else {
                self.stats.late_segments += 1;
                self.stats.duplicate_bytes += seg.payload.len() as u64;
                return;
            }
        }
        let id = match fid {
            Some(id) => {
                self.touch(id);
                id
            }
            None => match self.open(seg, key, ts) {
                Some(id) => id,
                None => {
                    self.stats.ignored += 1;
                    return;
                }
            },
        };
        let mut events = std::mem::take(&mut self.events);
        let flow = self.flows.get_mut(&id).expect("flow of a key");
        flow.last_ts = ts;
        let from_client = key == flow.client_key;
        let (this, other) = if from_client {
            (&mut flow.c2s, &mut flow.s2c)
        } else {
            (&mut flow.s2c, &mut flow.c2s)
        };
        let before = this.pending_bytes + other.pending_bytes;
        let mut seq = seg.seq;
        if flags & SYN != 0 {
            seq = seq.wrapping_add(1);
            if !this.started {
                this.start(seq);
            }
        }
        if flags & ACK != 0 {
            if other.started {
                other.acked(seg.ack, ts, &mut events);
                if !events.is_empty() {
                    feed(&mut self.sink, id, flow, !from_client, &mut events);
                }
            } else {
                other.start(seg.ack);
            }
        }
        let (this, other) = if from_client {
            (&mut flow.c2s, &mut flow.s2c)
        } else {
            (&mut flow.s2c, &mut flow.c2s)
        };
        let mut direct = false;
        if !seg.payload.is_empty() {
            if events.is_empty() && this.in_order(seq) {
                this.take_in_order(seg.payload);
                direct = true; // delivered below from the frame's bytes, without a copy
            } else {
                this.segment(seq, seg.payload, ts, &mut events);
            }
        }
        if seg.missing != 0 {
            this.lost(
                seq,
                seg.payload.len(),
                u64::from(seg.missing),
                ts,
                &mut events,
            );
        }
        if flags & FIN != 0 {
            this.fin(seq, seg.payload.len() as u64 + u64::from(seg.missing));
        }
        let after = this.pending_bytes + other.pending_bytes;
        let done = match (this.fin_offset, other.fin_offset) {
            (Some(a), Some(b)) => this.next_offset >= a && other.next_offset >= b,
            _ => false,
        };
        if direct {
            feed_direct(&mut self.sink, id, flow, from_client, seg.payload, ts);
        }
        if !events.is_empty() {
            feed(&mut self.sink, id, flow, from_client, &mut events);
        }
        self.events = events;
        self.buffered += after as i64 - before as i64;
        if flags & RST != 0 || done {
            let ck = flow.client_key;
            self.close(id, ts);
            self.stats.closed += 1;
            self.remember_ended(ck, ts);
        }
        if self.stats.segments & 255 == 0 {
            self.expire(self.now);
        }
        if self.buffered > self.lim.max_buffered as i64 {
            self.shed();
        }
    }

    fn remember_ended(&mut self, key: Key, ts: u64) {
        for k in [key, rev(&key)] {
            self.stamp += 1;
            if let Some((_, old)) = self.ended.insert(k, (ts, self.stamp)) {
                self.ended_order.remove(&old);
            }
            self.ended_order.insert(self.stamp, k);
        }
        let limit = ts.saturating_sub(ENDED_KEEP_NS);
        while let Some((&stamp, &k)) = self.ended_order.iter().next() {
            let when = self.ended[&k].0;
            if self.ended.len() > 2 * MAX_ENDED || when < limit {
                self.ended_order.remove(&stamp);
                self.ended.remove(&k);
            } else {
                break;
            }
        }
    }

    fn forget_ended(&mut self, key: &Key) {
        for k in [*key, rev(key)] {
            if let Some((_, stamp)) = self.ended.remove(&k) {
                self.ended_order.remove(&stamp);
            }
        }
    }

    /// Close flows idle for longer than the idle timeout; returns how many.
    pub fn expire(&mut self, now: u64) -> u64 {
        let mut n = 0;
        let limit = now as i128 - i128::from(self.lim.idle_timeout_ns);
        while let Some(id) = self.oldest() {
            let last = self.flows[&id].last_ts;
            if i128::from(last) >= limit {
                break;
            }
            self.close(id, last);
            n += 1;
        }
        self.stats.evicted_idle += n;
        n
    }

    /// End of capture: flush and close every flow.
    pub fn close_all(&mut self) {
        while let Some(id) = self.oldest() {
            let last = self.flows[&id].last_ts;
            self.close(id, last);
        }
    }

    /// (flows open, keys tracked)
    pub fn size(&self) -> (usize, usize) {
        (self.flows.len(), self.by_key.len())
    }

    /// The counters, with the per-stream ones of flows still open added in.
    pub fn snapshot(&self) -> FlowStats {
        let mut out = self.stats.clone();
        for f in self.flows.values() {
            for st in [&f.c2s.stats, &f.s2c.stats] {
                out.gaps += st.gaps;
                out.gap_bytes += st.gap_bytes;
                out.out_of_order += st.out_of_order;
                out.duplicate_bytes += st.duplicate_bytes;
                out.conflicts += st.conflicts;
            }
        }
        out.open_flows = self.flows.len() as u64;
        out.buffered_bytes = self.buffered.max(0) as u64;
        out
    }

    fn open(&mut self, seg: &Segment<'_>, key: Key, ts: u64) -> Option<u64> {
        let flags = seg.flags;
        if flags & RST != 0 {
            return None;
        }
        let (client_is_src, midstream) = if flags & SYN != 0 {
            (flags & ACK == 0, false)
        } else if !seg.payload.is_empty() {
            (self.guess_client_is_src(seg), true)
        } else {
            return None;
        };
        if self.flows.len() >= self.lim.max_flows {
            if let Some(old) = self.oldest() {
                let last = self.flows[&old].last_ts;
                self.close(old, last);
                self.stats.evicted_limit += 1;
            }
        }
        let rkey = rev(&key);
        let ckey = if client_is_src { key } else { rkey };
        let id = self.next_id;
        self.next_id += 1;
        let max = self.lim.max_stream_buffer;
        self.flows.insert(
            id,
            Flow {
                client_key: ckey,
                midstream,
                session: false,
                c2s: TcpStream::new(max),
                s2c: TcpStream::new(max),
                last_ts: ts,
                lru: 0,
                lru_key: 0,
                off: [0, 0],
            },
        );
        self.by_key.insert(key, id);
        self.by_key.insert(rkey, id);
        self.touch(id);
        if let Some(f) = self.flows.get_mut(&id) {
            f.lru_key = f.lru;
            self.lru.insert(f.lru, id);
        }
        self.stats.flows += 1;
        if midstream {
            self.stats.midstream += 1;
        }
        Some(id)
    }

    fn guess_client_is_src(&self, seg: &Segment<'_>) -> bool {
        let ports = &self.lim.ports;
        if !ports.is_empty() {
            let (s, d) = (ports.contains(&seg.sport), ports.contains(&seg.dport));
            if d && !s {
                return true;
            }
            if s && !d {
                return false;
            }
        }
        let head = &seg.payload[..seg.payload.len().min(8)];
        if head.starts_with(b"HTTP/") {
            return false;
        }
        if REQUEST_STARTS.iter().any(|m| head.starts_with(m)) {
            return true;
        }
        seg.dport < seg.sport
    }

    /// Flush both directions (holes become gaps), close the session, forget the flow.
    fn close(&mut self, id: u64, ts: u64) {
        let Some(mut flow) = self.flows.remove(&id) else {
            return;
        };
        let before = flow.c2s.pending_bytes + flow.s2c.pending_bytes;
        let mut events = std::mem::take(&mut self.events);
        // the client's bytes first: requests precede the responses they cause
        flow.c2s.flush(ts, &mut events);
        if !events.is_empty() {
            feed(&mut self.sink, id, &mut flow, true, &mut events);
        }
        flow.s2c.flush(ts, &mut events);
        if !events.is_empty() {
            feed(&mut self.sink, id, &mut flow, false, &mut events);
        }
        self.events = events;
        self.buffered -= before as i64;
        if flow.session {
            self.sink.close(id, ts, flow.off);
        }
        for st in [&flow.c2s.stats, &flow.s2c.stats] {
            self.stats.gaps += st.gaps;
            self.stats.gap_bytes += st.gap_bytes;
            self.stats.out_of_order += st.out_of_order;
            self.stats.duplicate_bytes += st.duplicate_bytes;
            self.stats.conflicts += st.conflicts;
        }
        let key = flow.client_key;
        self.by_key.remove(&key);
        self.by_key.remove(&rev(&key));
        self.lru.remove(&flow.lru_key);
    }

    /// Too many bytes wait for missing ones: close the least recently active flows.
    fn shed(&mut self) {
        while self.buffered > (self.lim.max_buffered / 2) as i64 {
            let Some(id) = self.oldest() else { break };
            let last = self.flows[&id].last_ts;
            self.close(id, last);
            self.stats.evicted_limit += 1;
        }
    }
}

/// A flow's in-order payload straight to the sink (as `feed` of one chunk).
fn feed_direct(sink: &mut Sink, id: u64, flow: &mut Flow, from_client: bool, data: &[u8], ts: u64) {
    open_session(sink, id, flow);
    let d = usize::from(!from_client);
    let off = flow.off[d];
    flow.off[d] = off + data.len() as u64;
    sink.data(id, d as u8, off, data, ts);
}

fn open_session(sink: &mut Sink, id: u64, flow: &mut Flow) {
    if !flow.session {
        flow.session = true;
        let (c, s) = (flow.client_key, rev(&flow.client_key));
        let ends = Ends {
            client: c.0,
            client_port: c.1,
            server: s.0,
            server_port: s.1,
            midstream: flow.midstream,
        };
        sink.open(id, &ends);
    }
}

/// A flow's events to the sink (its session opened on the first).
fn feed(sink: &mut Sink, id: u64, flow: &mut Flow, from_client: bool, events: &mut Vec<Event>) {
    open_session(sink, id, flow);
    let d = usize::from(!from_client);
    for ev in events.drain(..) {
        let off = flow.off[d];
        match ev {
            Event::Chunk { data, ts } => {
                flow.off[d] = off + data.len() as u64;
                sink.data(id, d as u8, off, &data, ts);
            }
            Event::Gap { size, ts } => {
                flow.off[d] = off + size;
                sink.gap(id, d as u8, off, size, ts);
            }
        }
    }
}
