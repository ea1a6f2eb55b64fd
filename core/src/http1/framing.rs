//! Body framing: what the headers say (Content-Length, Transfer-Encoding, keep-alive,
//! Upgrade), how a request or response is framed, and which request a response answers.

use super::{Headers, Invalid, Message, Out, Parser, State};

impl Parser {
    pub(super) fn body(&mut self, pos: usize, len: usize) {
        let Some(msg) = self.msg.as_mut() else {
            return;
        };
        msg.body_size += len as i64;
        let room = self.room;
        let ln = len as i64;
        if ln <= room {
            msg.body.extend_from_slice(&self.buf[pos..pos + len]);
            self.room = room - ln;
        } else if room >= 0 {
            msg.body
                .extend_from_slice(&self.buf[pos..pos + room as usize]);
            self.room = 0;
            msg.flags.insert("truncated");
        }
    }

    pub(super) fn frame_request(
        &mut self,
        msg: Message,
        sem: Result<Framing, Invalid>,
        out: &mut Out,
    ) -> Result<(), Invalid> {
        let tunnel = msg.method == "CONNECT" || msg.method == "PRI";
        let sem = match sem {
            Ok(s) => s,
            Err(e) => {
                self.announce(&msg, tunnel);
                self.msg = Some(msg);
                return Err(e);
            }
        };
        let upgrade = tunnel || sem.asks_upgrade;
        self.announce(&msg, upgrade);
        self.msg = Some(msg);
        if sem.te && !sem.chunked {
            return Err(Invalid);
        }
        if upgrade {
            self.upgrade_req = true;
        }
        self.closing = !sem.keep_alive;
        if tunnel {
            self.complete(None, out);
        } else if sem.chunked {
            self.state = State::ChunkSize;
        } else if let Some(len) = sem.length.filter(|&l| l > 0) {
            self.state = State::Body(len);
        } else {
            self.complete(None, out);
        }
        Ok(())
    }

    pub(super) fn frame_response(
        &mut self,
        mut msg: Message,
        sem: Result<Framing, Invalid>,
        end: usize,
        out: &mut Out,
    ) -> Result<(), Invalid> {
        let status = msg.status_code;
        if status < 200 && status != 101 {
            // interim (100 Continue, 103): not a message of its own
            return sem.map(|_| ());
        }
        let method = self.answer(msg.start_ts_ns);
        let sem = match sem {
            Ok(s) => s,
            Err(e) => {
                self.msg = Some(msg);
                return Err(e);
            }
        };
        if status == 101 || (method.as_deref() == Some("CONNECT") && (200..300).contains(&status)) {
            msg.flags.insert("upgrade");
            self.msg = Some(msg);
            self.upgraded = true;
            self.complete(None, out);
            self.state = State::Dead;
            return Ok(());
        }
        self.msg = Some(msg);
        if method.as_deref() == Some("HEAD") || status == 204 || status == 304 {
            self.closing = !sem.keep_alive;
            self.complete(None, out);
            return Ok(());
        }
        self.closing = !sem.keep_alive;
        if method.is_none() && (sem.chunked || sem.length.is_some_and(|l| l > 0)) {
            // answers a request we did not see: a status line right after it means that
            // request was a HEAD (no body)
            if self.buf[end..].starts_with(b"HTTP/1.") {
                self.complete(None, out);
                return Ok(());
            }
        }
        if sem.chunked {
            self.state = State::ChunkSize;
        } else if sem.te || sem.length.is_none() {
            self.state = State::Close;
        } else if let Some(len) = sem.length.filter(|&l| l > 0) {
            self.state = State::Body(len);
        } else {
            self.complete(None, out);
        }
        Ok(())
    }

    /// The method of the request this final response answers (None: unknown); sets the
    /// link (requests whose answers were lost, or -1: answers none we saw).
    pub(super) fn answer(&mut self, start_ts: u64) -> Option<String> {
        if self.popped {
            return self.method.clone();
        }
        self.popped = true;
        let mut skip = 0;
        if self.after_gap {
            self.after_gap = false;
            while self.expects.len() > 1 && self.expects[1].start_ts_ns <= start_ts {
                self.drop_method();
                skip += 1;
            }
        }
        let method = match self.expects.front() {
            Some(e) if e.start_ts_ns <= start_ts => {
                self.link = skip;
                Some(self.drop_method())
            }
            _ => {
                self.link = -1;
                None
            }
        };
        self.method.clone_from(&method);
        method
    }

    pub(super) fn drop_method(&mut self) -> String {
        let e = self.expects.pop_front().expect("a waiting request");
        if e.asks_upgrade {
            self.asked_upgrade = true;
        }
        e.method
    }

    pub(super) fn complete(&mut self, end_ts: Option<u64>, out: &mut Out) {
        if let Some(mut msg) = self.msg.take() {
            msg.end_ts_ns = end_ts.unwrap_or(self.ts);
            out.push((msg, self.link));
        }
        self.link = 0;
        self.popped = false;
        if self.state != State::Dead {
            self.state = State::Idle;
        }
        if self.is_request && self.upgrade_req {
            self.upgrade_req = false;
            self.state = State::Held;
        }
        if !self.is_request && self.asked_upgrade && !self.upgraded {
            self.asked_upgrade = false;
            self.refused = true;
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub length: Option<u64>,
    pub chunked: bool,
    pub te: bool,
    pub keep_alive: bool,
    pub asks_upgrade: bool,
}

pub(super) fn tokens(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(|t| t.trim_matches([' ', '\t']).to_ascii_lowercase())
}

/// What the headers say about the body and the connection (head.py _semantics).
pub(super) fn semantics(headers: &Headers, version: &str) -> Result<Framing, Invalid> {
    let mut length = None;
    let mut te = false;
    let mut chunked = false;
    let mut conn: Vec<String> = Vec::new();
    let mut has_upgrade = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let v = value.trim_matches([' ', '\t']);
            if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) || v.len() > 18 {
                return Err(Invalid);
            }
            if length.is_some() {
                return Err(Invalid);
            }
            length = Some(v.parse::<u64>().map_err(|_| Invalid)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            let codings: Vec<String> = tokens(value).collect();
            let last = codings.last().map(String::as_str) == Some("chunked");
            let before = codings[..codings.len() - 1].iter().any(|c| c == "chunked");
            chunked = !chunked && last && !before;
        } else if name.eq_ignore_ascii_case("connection") {
            conn.extend(tokens(value));
        } else if name.eq_ignore_ascii_case("upgrade") {
            has_upgrade = true;
        }
    }
    if te && length.is_some() {
        return Err(Invalid);
    }
    let default_keep_alive = version != "HTTP/1.0";
    let keep_alive = if conn.iter().any(|c| c == "close") {
        false
    } else if conn.iter().any(|c| c == "keep-alive") {
        true
    } else {
        default_keep_alive
    };
    let asks_upgrade = conn.iter().any(|c| c == "upgrade") && has_upgrade;
    Ok(Framing {
        length,
        chunked,
        te,
        keep_alive,
        asks_upgrade,
    })
}
