//! The records of one connection: DATA, GAP, OPEN, ADDR and CLOSE.

use super::conn::Conn;
use super::{endpoint, Decoder};

use crate::layout::{ConnEvent, DataEvent};
use crate::stitch::Stitcher;
use crate::stream::OrderedStream;
use crate::{layout, pb};

impl Decoder {
    pub(super) fn on_data(&mut self, d: &DataEvent<'_>) {
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

    pub(super) fn on_gap(&mut self, d: &DataEvent<'_>) {
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

    pub(super) fn on_open(&mut self, c: &ConnEvent) {
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

    pub(super) fn on_addr(&mut self, c: &ConnEvent) {
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

    pub(super) fn on_close(&mut self, c: &ConnEvent) {
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
                Some(conn) if self.tls.contains(&c.conn_id) => {
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
}
