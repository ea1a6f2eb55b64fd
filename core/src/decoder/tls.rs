//! TLS plaintext records: switching a connection to fresh plaintext streams.

use super::Decoder;

use crate::layout;
use crate::layout::DataEvent;
use crate::stitch::Stitcher;
use crate::stream::OrderedStream;

impl Decoder {
    /// TLS plaintext: the first record of a connection switches it to fresh plaintext
    /// streams and parser (ciphertext seen before the programs knew is dropped); then the
    /// record is handled as the DATA or GAP record it stands for.
    pub(super) fn on_tls(&mut self, d: &DataEvent<'_>) {
        self.counters.add("tls_records", 1);
        let max_body = self.max_body;
        if let Some(conn) = self.conns.get_mut(&d.conn_id) {
            if !self.tls.contains(&d.conn_id) {
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
}
