//! The HTTP/1.x parser state machine: feeding bytes, pumping the buffer through the
//! states, parse errors (flag the message, fail the stream or resync).

use std::collections::VecDeque;

use super::chunked::chunk_size;
use super::head::fields;
use super::recovery::start_pattern;
use super::{
    find_crlf, find_end, Message, Out, Parser, State, Step, MAX_CHUNK_LINE, MAX_HEADER_BYTES,
    MAX_START_LINE,
};

impl Parser {
    pub fn new(is_request: bool, max_body: u64) -> Self {
        Self {
            is_request,
            max_body,
            state: State::Idle,
            buf: Vec::new(),
            marks: Vec::new(),
            msg: None,
            room: 0,
            ts: 0,
            last_ts: 0,
            gap_next: false,
            after_gap: false,
            seen: false,
            closing: false,
            announced: false,
            popped: false,
            method: None,
            link: 0,
            expects: VecDeque::new(),
            upgrade_req: false,
            asked_upgrade: false,
            held: Vec::new(),
            failed: false,
            upgraded: false,
            heads: Vec::new(),
            refused: false,
            parse_errors: 0,
            resync: false,
            chunk_at_hole: false,
            chunk_keep: None,
        }
    }

    pub(super) fn ts_at(&self, pos: usize) -> u64 {
        let mut ts = self.ts;
        for &(o, t) in &self.marks {
            if o <= pos {
                ts = t;
            } else {
                break;
            }
        }
        ts
    }

    /// Begin mid-stream: skip to the first start line (machine.py ``resync``).
    pub fn resync_start(&mut self) {
        self.resync = true;
        self.state = State::Scan;
    }

    /// The next bytes of this direction, captured at ts_ns.
    pub fn feed(&mut self, data: &[u8], ts_ns: u64, out: &mut Out) {
        match self.state {
            State::Dead => return,
            State::Held => {
                self.held
                    .push((Some(data.to_vec()), ts_ns, data.len() as u64));
                return;
            }
            _ => {}
        }
        self.ts = ts_ns;
        self.marks.push((self.buf.len(), ts_ns));
        self.buf.extend_from_slice(data);
        self.pump(out);
    }

    /// Parse what is buffered. A response that refuses an upgrade stops it early
    /// (`refused`): the stitcher resumes the request side, then pumps again.
    pub fn pump(&mut self, out: &mut Out) {
        let mut pos = 0;
        let consumed = loop {
            match self.run(&mut pos, out) {
                Ok(()) => break pos,
                Err(at) => match self.on_error(at, out) {
                    Some(p) => pos = p,
                    None => break self.buf.len(),
                },
            }
        };
        let consumed = consumed.min(self.buf.len());
        self.buf.drain(..consumed);
        let mut marks = Vec::with_capacity(self.marks.len());
        for (i, &(o, t)) in self.marks.iter().enumerate() {
            let next = self.marks.get(i + 1).map_or(usize::MAX, |m| m.0);
            if next > consumed {
                marks.push((o.saturating_sub(consumed), t));
            }
        }
        self.marks = marks;
        if self.state == State::Held {
            // bytes after a request that may switch protocols wait for the answer
            if !self.buf.is_empty() {
                let rest = std::mem::take(&mut self.buf);
                let ts = self.marks.first().map_or(self.ts, |m| m.1);
                let n = rest.len() as u64;
                self.held.push((Some(rest), ts, n));
            }
            self.marks.clear();
        }
    }

    /// A parse error at `at`: flag the message it hit, then fail the stream (its first
    /// message) or look for the next start line after `at`.
    pub(super) fn on_error(&mut self, at: usize, out: &mut Out) -> Option<usize> {
        self.parse_errors += 1;
        if let Some(mut msg) = self.msg.take() {
            msg.flags.insert("parse_error");
            msg.flags.insert("incomplete");
            self.finish_cut(msg, out);
        }
        if !self.seen && !self.resync {
            self.failed = true;
            self.state = State::Dead;
            return None;
        }
        self.state = State::Scan;
        self.after_gap = true;
        Some((at + 1).min(self.buf.len()))
    }

    pub(super) fn finish_cut(&mut self, mut msg: Message, out: &mut Out) {
        msg.end_ts_ns = self.last_ts;
        out.push((msg, self.link));
        self.link = 0;
        self.popped = false;
    }

    pub(super) fn run(&mut self, pos: &mut usize, out: &mut Out) -> Step {
        loop {
            let n = self.buf.len();
            if *pos >= n {
                return Ok(());
            }
            let p = *pos;
            match self.state {
                State::Dead | State::Held => return Ok(()),
                State::Idle => {
                    if self.refused {
                        return Ok(());
                    }
                    let c = self.buf[p];
                    if c == b'\r' || c == b'\n' {
                        *pos += 1;
                        continue;
                    }
                    if self.closing {
                        return Err(p);
                    }
                    let end = find_end(&self.buf[p..]).filter(|&e| e <= MAX_HEADER_BYTES);
                    let Some(end) = end else {
                        if n - p > MAX_HEADER_BYTES {
                            *pos = self.head_too_large(p, out)?;
                            continue;
                        }
                        self.check_partial(p).map_err(|_| p)?;
                        return Ok(());
                    };
                    *pos = self.head(p, p + end + 4, out)?;
                }
                State::Body(rem) | State::ChunkData(rem) => {
                    let take = rem.min((n - p) as u64) as usize;
                    self.body(p, take);
                    *pos += take;
                    let left = rem - take as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => {
                            self.complete(None, out);
                            continue;
                        }
                        (State::Body(_), l) => State::Body(l),
                        (_, 0) => State::ChunkCrlf,
                        (_, l) => State::ChunkData(l),
                    };
                }
                State::ChunkSize => {
                    let Some(eol) = find_crlf(&self.buf[p..]) else {
                        if n - p > MAX_CHUNK_LINE {
                            return Err(p);
                        }
                        return Ok(());
                    };
                    let size = chunk_size(&self.buf[p..p + eol]).map_err(|_| p)?;
                    *pos += eol + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkCrlf => {
                    if n - p < 2 {
                        if self.buf[p] != b'\r' {
                            return Err(p);
                        }
                        return Ok(());
                    }
                    if &self.buf[p..p + 2] != b"\r\n" {
                        return Err(p);
                    }
                    *pos += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    if n - p < 2 {
                        return Ok(());
                    }
                    if &self.buf[p..p + 2] == b"\r\n" {
                        *pos += 2;
                        self.complete(None, out);
                        continue;
                    }
                    let Some(end) = find_end(&self.buf[p..]) else {
                        if n - p > MAX_HEADER_BYTES {
                            return Err(p);
                        }
                        return Ok(());
                    };
                    let trailers = fields(&self.buf[p..p + end + 2]).map_err(|_| p)?;
                    *pos += end + 4;
                    if let Some(m) = self.msg.as_mut() {
                        m.trailers = trailers;
                    }
                    self.complete(None, out);
                }
                State::Close => {
                    self.body(p, n - p);
                    self.last_ts = self.ts;
                    *pos = n;
                }
                State::ChunkScan => {
                    if let Some(at) = self.chunk_scan(p, out) {
                        *pos = at;
                    } else {
                        *pos = self.chunk_scan_keep(p);
                        return Ok(());
                    }
                }
                State::Scan => match start_pattern(self.is_request).find_at(&self.buf, p) {
                    Some(m) => {
                        *pos = m.start();
                        self.state = State::Idle;
                        self.closing = false;
                    }
                    None => {
                        // keep a tail that may begin a start line (after the last LF)
                        let last_lf =
                            memchr::memrchr(b'\n', &self.buf[p..]).map_or(p, |i| p + i + 1);
                        *pos = last_lf.max(p).max(n.saturating_sub(MAX_START_LINE));
                        return Ok(());
                    }
                },
            }
        }
    }
}
