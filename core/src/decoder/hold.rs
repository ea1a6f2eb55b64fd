//! The hold (live capture): exchanges wait for the context Python sets for their
//! connection, or go out with the core's own template once too many wait.

use super::Decoder;

use crate::pb;
use crate::stitch::Exchange;

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

impl Decoder {
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

    /// Exchanges of a live connection: gap marks, then out.
    pub(super) fn emit_all(&mut self, cid: u64, out: Vec<Exchange>) {
        if out.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        for ex in &out {
            conn.note_exchange(ex);
        }
        // lent out for the loop, not cloned (emitting never touches the connections)
        let template = std::mem::take(&mut conn.template);
        for ex in out {
            self.emit_for(cid, &template, Item::H1(ex));
        }
        if let Some(conn) = self.conns.get_mut(&cid) {
            conn.template = template;
        }
    }

    /// hold: with the context Python set, or held until it does (at most MAX_HELD, then
    /// out with the core's template, flagged `noaddr`).
    pub(super) fn emit_for(&mut self, cid: u64, own: &pb::RrPair, ex: Item) {
        if !self.hold {
            return self.emit(cid, own, ex);
        }
        if let Some(t) = self.contexts.remove(&cid) {
            // lent out, not cloned: emit() never touches the contexts
            self.emit(cid, &t, ex);
            self.contexts.insert(cid, t);
            return;
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
}
