//! Protocol switches: bytes held after a request that may switch protocols, resumed
//! when the upgrade is refused, and the rest handed to the decoder that takes over.

use super::{Out, Parser, State};

impl Parser {
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The upgrade was refused: parse the held bytes again.
    pub fn resume(&mut self, out: &mut Out) {
        if self.state != State::Held {
            // answered (and refused) before the request ended: do not hold after it
            self.upgrade_req = false;
            return;
        }
        self.state = State::Idle;
        for (data, ts, n) in std::mem::take(&mut self.held) {
            match data {
                Some(d) => self.feed(&d, ts, out),
                None => self.gap(n, ts, out),
            }
        }
    }

    /// The connection switched protocols: ignore the rest.
    pub fn stop(&mut self) {
        self.upgraded = true;
        self.state = State::Dead;
        self.held.clear();
        self.buf.clear();
        self.marks.clear();
    }

    /// The bytes after the message that switched protocols (parsed or held, not yet
    /// taken), for the decoder that takes over (HTTP/2 after `Upgrade: h2c`).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        for (d, _, _) in self.held.drain(..) {
            rest.extend(d.unwrap_or_default());
        }
        rest
    }
}
