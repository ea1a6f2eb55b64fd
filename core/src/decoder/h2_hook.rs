//! HTTP/2 (src/h2) inside the decoder: detection on the first bytes, feeding, and the
//! switch after `Upgrade: h2c`.

use super::hold::Item;
use super::{wall, Decoder};

use crate::pb;
use crate::stream::Chunk;

impl Decoder {
    /// HTTP/2 (src/h2): a connection whose first bytes are the client preface (or frames,
    /// joined mid-way) goes to the HTTP/2 decoder instead of the stitcher. `ch` None: the
    /// connection ends. Returns whether the connection is HTTP/2.
    pub(super) fn h2(&mut self, cid: u64, dir: usize, ch: Option<&Chunk>) -> bool {
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
    pub(super) fn h2_upgrade(&mut self, cid: u64, req: crate::h2::conn::Msg, ts_ns: u64) {
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
}
