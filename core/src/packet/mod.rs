//! Captured frames in, encoded RRPairs out: frame decoding, the flow table and TCP
//! reassembly in front of the core's decoder (the one the syscall capture feeds), so that
//! live packet mode and pcap import make no Python call per packet or per segment.
//!
//! - `frame`: link, IP and TCP headers (etherparse), as agent/packet/decode.py
//! - `reassembly`: one direction of a TCP connection, as agent/packet/reassembly.py
//! - `flows`: the flow table, as agent/packet/flows.py
//! - `records`: a flow as the kernel's records; `sink`: those records into the decoder
//! - `tpacket`: the blocks of a TPACKET_V3 receive ring (live mode)
//! - `fuzz`: the `packets` fuzz target's body
#![forbid(unsafe_code)]

pub mod flows;
pub mod frame;
pub mod fuzz;
pub mod reassembly;
pub mod records;
pub mod sink;
pub mod tpacket;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::decoder::Decoder;

use flows::{FlowTable, Limits};
use frame::Frame;
use sink::Sink;

/// Frame-level counters (agent/packet/pipeline.py PacketStats).
#[derive(Debug, Clone, Default)]
pub struct PacketStats {
    pub packets: u64,
    pub bytes: u64,
    pub tcp: u64,
    pub not_tcp: u64,
    pub malformed: u64,
    pub unsupported_link: u64,
    /// frames whose handling panicked (a bug): counted, skipped
    pub panics: u64,
}

pub struct Pipeline {
    pub table: FlowTable,
    pub stats: PacketStats,
    /// link types met that are not supported (each logged once by the caller)
    pub bad_links: HashSet<u32>,
}

impl Pipeline {
    pub fn new(dec: Decoder, source: String, node: String, lim: Limits) -> Self {
        Self {
            table: FlowTable::new(Sink::new(dec, source, node), lim),
            stats: PacketStats::default(),
            bad_links: HashSet::new(),
        }
    }

    /// One captured frame.
    pub fn frame(&mut self, ts: u64, linktype: u32, buf: &[u8]) {
        let stats = &mut self.stats;
        stats.packets += 1;
        stats.bytes += buf.len() as u64;
        if !frame::supported(linktype) {
            stats.unsupported_link += 1;
            self.bad_links.insert(linktype);
            return;
        }
        let table = &mut self.table;
        let done = catch_unwind(AssertUnwindSafe(|| match frame::decode(linktype, buf) {
            Frame::Tcp(seg) => {
                stats.tcp += 1;
                table.segment(&seg, ts);
            }
            Frame::NotTcp => stats.not_tcp += 1,
            Frame::Malformed => stats.malformed += 1,
        }));
        if done.is_err() {
            self.stats.panics += 1;
        }
    }

    /// Feed the records batched so far to the decoder.
    pub fn flush(&mut self) {
        self.table.sink.flush();
    }

    /// Close flows idle since before the idle timeout; returns how many.
    pub fn expire(&mut self, now: u64) -> u64 {
        let n = self.table.expire(now);
        self.flush();
        n
    }

    /// End of input: flush and close every flow.
    pub fn finish(&mut self) {
        self.table.close_all();
        self.flush();
    }

    /// Frame- and flow-level counters by name (PacketPipeline.summary's, without rrpairs
    /// and the core's).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let f = self.table.snapshot();
        vec![
            ("packets", s.packets),
            ("bytes", s.bytes),
            ("tcp_packets", s.tcp),
            ("not_tcp", s.not_tcp),
            ("malformed", s.malformed),
            ("unsupported_link", s.unsupported_link),
            ("filtered", f.filtered),
            ("flows", f.flows),
            ("midstream_flows", f.midstream),
            ("open_flows", f.open_flows),
            ("evicted_idle", f.evicted_idle),
            ("evicted_limit", f.evicted_limit),
            ("gaps", f.gaps),
            ("gap_bytes", f.gap_bytes),
            ("out_of_order", f.out_of_order),
            ("duplicate_bytes", f.duplicate_bytes),
            ("conflicts", f.conflicts),
            ("late_segments", f.late_segments),
            ("ignored", f.ignored),
            ("closed", f.closed),
            ("segments", f.segments),
            ("buffered_bytes", f.buffered_bytes),
            ("packet_panics", s.panics),
        ]
    }
}
