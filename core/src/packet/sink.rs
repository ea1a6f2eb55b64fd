//! Reassembled bytes into the core's decoder (agent/packet/http_session.py's job): each
//! flow's context built once, its records batched, the batch fed past `BATCH_BYTES`.
#![forbid(unsafe_code)]

use crate::decoder::Decoder;
use crate::layout::ip_text;
use crate::pb;

use super::records::{self, Ends};

/// A batch is fed to the decoder past this many bytes of records.
pub const BATCH_BYTES: usize = 64 << 10;

pub struct Sink {
    pub dec: Decoder,
    buf: Vec<u8>,
    source: String,
    node: String,
}

impl Sink {
    pub fn new(dec: Decoder, source: String, node: String) -> Self {
        Self {
            dec,
            buf: Vec::with_capacity(BATCH_BYTES * 2),
            source,
            node,
        }
    }

    /// A flow's first bytes: its context (as build_http_rrpair makes it for an empty
    /// exchange) and its OPEN record.
    pub fn open(&mut self, cid: u64, ends: &Ends) {
        let template = pb::RrPair {
            l7protocol: "http".into(),
            direction: pb::NETWORK,
            client: Some(pb::Endpoint {
                ip: ip_text(&ends.client),
                port: u32::from(ends.client_port),
            }),
            server: Some(pb::Endpoint {
                ip: ip_text(&ends.server),
                port: u32::from(ends.server_port),
            }),
            meta: Some(pb::Meta {
                node: self.node.clone(),
                source: self.source.clone(),
                conn_id: cid,
                ..Default::default()
            }),
            flags: if ends.midstream {
                vec!["preexisting".into()]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        self.dec.set_context(cid, template);
        records::open(&mut self.buf, cid, ends);
    }

    pub fn data(&mut self, cid: u64, dir: u8, off: u64, data: &[u8], ts: u64) {
        records::data(&mut self.buf, cid, dir, off, data, ts);
        if self.buf.len() > BATCH_BYTES {
            self.flush();
        }
    }

    pub fn gap(&mut self, cid: u64, dir: u8, off: u64, size: u64, ts: u64) {
        records::gap(&mut self.buf, cid, dir, off, size, ts);
    }

    pub fn close(&mut self, cid: u64, ts: u64, off: [u64; 2]) {
        records::close(&mut self.buf, cid, ts, off);
        if self.buf.len() > BATCH_BYTES {
            self.flush();
        }
    }

    /// Feed the batch to the decoder.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.dec.feed_records_from(&buf, 0);
            self.buf = buf;
            self.buf.clear();
        }
    }
}
