//! The decoder's counters: their names, in the order `counters()` returns them.

use std::collections::BTreeMap;

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
    // s29-rulesc: RRPairs lost to a panic inside the edge rules (never written unredacted)
    "rules_panics",
];

#[derive(Debug, Default, Clone)]
pub struct Counters(pub BTreeMap<&'static str, u64>);

impl Counters {
    pub(super) fn add(&mut self, name: &'static str, n: u64) {
        *self.0.entry(name).or_insert(0) += n;
    }
}
