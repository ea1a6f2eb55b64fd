//! One tracked connection: its ordered streams, stitcher or HTTP/2 decoder, the RRPair
//! template its exchanges start from, and its gap marks (agent/gap_marks.py).

use crate::pb;
use crate::stitch::{Exchange, Stitcher};
use crate::stream::OrderedStream;

pub(super) struct Conn {
    pub(super) req_dir: u8,
    pub(super) streams: [OrderedStream; 2],
    pub(super) stitcher: Stitcher,
    /// The RRPair every exchange of this connection starts from (direction, client,
    /// server, meta, connection-wide flags).
    pub(super) template: pb::RrPair,
    pub(super) from_python: bool,
    pub(super) h2: crate::h2::State,
    /// Opened before the capture: its streams may begin mid-message.
    pub(super) preexisting: bool,
    /// Per direction: wall-clock ns of the latest loss no message begun after it has
    /// followed yet, else 0 (agent/gap_marks.py).
    pub(super) open_gaps: [u64; 2],
}

impl Conn {
    /// gap_marks.note_exchange: a message begun at or after a loss closes it.
    pub(super) fn note_exchange(&mut self, ex: &Exchange) {
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
    pub(super) fn flag_unanswered(&self, ex: &mut Exchange) {
        let rq = usize::from(self.req_dir);
        if (ex.response.is_none() && self.open_gaps[rq ^ 1] != 0)
            || (ex.request.is_none() && self.open_gaps[rq] != 0)
        {
            ex.flags.insert("gap");
        }
    }
}
