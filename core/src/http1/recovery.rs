//! Recovery: bytes skipped on purpose, gaps, heads cut short or too large, the scan
//! for the next start line, and the end of the stream.

use std::sync::OnceLock;

use super::chunk_resync::{find_chunk_boundary, Proof};
use super::head::{fields, parse_request_line, parse_status_line};
use super::{find_crlf, Message, Out, Parser, State, MAX_HEADER_BYTES, MAX_START_LINE, METHODS};

/// Where the resynchroniser may start again (syntax.py REQ_START / RESP_START); the
/// `regex` crate matches in linear time.
pub(super) fn start_pattern(is_request: bool) -> &'static regex::bytes::Regex {
    static REQ: OnceLock<regex::bytes::Regex> = OnceLock::new();
    static RES: OnceLock<regex::bytes::Regex> = OnceLock::new();
    if is_request {
        REQ.get_or_init(|| {
            let p = format!(
                r"(?-u)(?:(?m:^)[A-Z][A-Z0-9_-]{{0,31}}|{METHODS}) [\x21-\x7e\x80-\xff]+ HTTP/1\.[01]\r\n"
            );
            regex::bytes::Regex::new(&p).expect("REQ_START compiles")
        })
    } else {
        RES.get_or_init(|| {
            regex::bytes::Regex::new(r"(?-u)HTTP/1\.[01] [0-9]{3}(?: [^\r\n]{0,1024})?\r\n")
                .expect("RESP_START compiles")
        })
    }
}

impl Parser {
    /// `nbytes` not copied on purpose (past the capture's copy bound) inside the current
    /// body: counted in its size, the body kept so far flagged "truncated" (body.py _skip).
    /// False when they are not all inside the current body (the caller makes them a gap).
    pub fn skip(&mut self, nbytes: u64, ts_ns: u64, out: &mut Out) -> bool {
        if nbytes == 0 || !self.buf.is_empty() {
            return false;
        }
        let rem = match self.state {
            State::Body(r) | State::ChunkData(r) => Some(r),
            State::Close => None,
            _ => return false,
        };
        if rem.is_some_and(|r| nbytes > r) {
            return false;
        }
        let Some(msg) = self.msg.as_mut() else {
            return false;
        };
        self.ts = ts_ns;
        msg.body_size += nbytes as i64;
        if self.room >= 0 {
            // -1: already cut by a gap, which says more
            self.room = 0;
            msg.flags.insert("truncated");
        }
        match self.state {
            State::Body(r) if r == nbytes => self.complete(None, out),
            State::Body(r) => self.state = State::Body(r - nbytes),
            State::ChunkData(r) if r == nbytes => self.state = State::ChunkCrlf,
            State::ChunkData(r) => self.state = State::ChunkData(r - nbytes),
            _ => {}
        }
        true
    }

    /// `nbytes` of this direction are missing here (recovery.py _gap_in).
    pub fn gap(&mut self, nbytes: u64, ts_ns: u64, out: &mut Out) {
        if nbytes == 0 {
            return;
        }
        self.ts = ts_ns;
        match self.state {
            State::Dead => return,
            State::Held => {
                self.held.push((None, ts_ns, nbytes));
                return;
            }
            _ => {}
        }
        let in_body = matches!(
            self.state,
            State::Body(_) | State::ChunkData(_) | State::Close
        );
        if self.msg.is_some() && self.buf.is_empty() && in_body {
            let msg = self.msg.as_mut().expect("msg");
            msg.flags.insert("gap");
            self.room = -1;
            match self.state {
                State::Close => {
                    msg.body_size += nbytes as i64;
                    return;
                }
                State::Body(rem) if nbytes < rem => {
                    msg.body_size += nbytes as i64;
                    self.state = State::Body(rem - nbytes);
                    return;
                }
                State::ChunkData(rem) if nbytes < rem => {
                    msg.body_size += nbytes as i64;
                    self.state = State::ChunkData(rem - nbytes);
                    return;
                }
                State::ChunkData(rem) if nbytes == rem => {
                    msg.body_size += nbytes as i64;
                    self.state = State::ChunkCrlf;
                    return;
                }
                State::Body(rem) => {
                    msg.body_size += rem as i64;
                    let lost = nbytes - rem;
                    self.complete(None, out);
                    if lost > 0 {
                        self.gap_next = true;
                        self.after_gap = true;
                        self.enter_scan();
                    }
                    return;
                }
                _ => {}
            }
        }
        let chunked = matches!(
            self.state,
            State::ChunkData(_) | State::ChunkSize | State::ChunkCrlf | State::ChunkScan
        );
        if chunked {
            if let Some(msg) = self.msg.as_mut() {
                // the chunk framing is lost: find it again (or the next start line); the
                // hole and the bytes kept before it count in body_size (an upper bound: the
                // framing they held is counted too)
                msg.flags.insert("gap");
                let kept = if self.state == State::ChunkScan {
                    self.buf.len()
                } else {
                    0
                };
                msg.body_size += (nbytes as i64).saturating_add(kept as i64);
                self.room = -1;
                self.after_gap = true;
                self.buf.clear();
                self.marks.clear();
                self.state = State::ChunkScan;
                self.chunk_at_hole = true;
                return;
            }
        }
        if let Some(mut msg) = self.msg.take() {
            // bytes of this message were lost: "gap" (not "incomplete": ended early)
            msg.flags.insert("gap");
            self.finish_cut(msg, out);
        } else if self.state == State::Idle && self.buf.iter().any(|&c| c != b'\r' && c != b'\n') {
            self.partial_head(0, "gap", out);
        } else {
            self.gap_next = true;
        }
        self.after_gap = true;
        self.enter_scan();
    }

    /// After a gap in a chunked body: framing resumes at the first chunk-size line whose
    /// framing holds (chunk_resync.rs), unless a start line comes first (then the message
    /// ends cut). Every byte skipped until then counts in `body_size` (the chunk framing
    /// among them too: an upper bound, flagged "gap"). Where to continue; None: neither
    /// yet (`chunk_keep`: where a candidate waiting for bytes begins). recovery.py
    /// _chunk_scan.
    pub(super) fn chunk_scan(&mut self, p: usize, out: &mut Out) -> Option<usize> {
        let start = start_pattern(self.is_request)
            .find_at(&self.buf, p)
            .map(|m| m.start());
        let limit = start.unwrap_or(self.buf.len());
        let (kind, at) = find_chunk_boundary(&self.buf, p, limit, self.chunk_at_hole);
        self.chunk_at_hole = kind == Proof::More && at == p && self.chunk_at_hole;
        match kind {
            Proof::Found => {
                if let Some(msg) = self.msg.as_mut() {
                    msg.body_size += (at - p) as i64;
                }
                self.state = State::ChunkSize;
                Some(at)
            }
            Proof::More => {
                self.chunk_keep = Some(if self.chunk_at_hole { at } else { at - 2 });
                None
            }
            Proof::Refuted => {
                self.chunk_keep = None;
                let s = start?;
                if let Some(mut msg) = self.msg.take() {
                    msg.body_size += (s - p) as i64;
                    self.finish_cut(msg, out);
                }
                self.state = State::Idle;
                self.closing = false;
                Some(s)
            }
        }
    }

    /// Nothing proven in `buf[p..]`: skip all but a candidate waiting for bytes, or a tail
    /// that may begin one (from the last CRLF, or a CR at the end) or a start line
    /// (recovery.py _chunk_scan_keep). Where the kept bytes begin.
    pub(super) fn chunk_scan_keep(&mut self, p: usize) -> usize {
        let buf = &self.buf;
        let n = buf.len();
        let keep = match self.chunk_keep.take().filter(|&k| k >= p) {
            Some(k) => k,
            None => {
                let mut lf = memchr::memrchr(b'\n', &buf[p..]).map(|i| p + i);
                if let Some(l) = lf.filter(|&l| l > p && buf[l - 1] == b'\r') {
                    lf = Some(l - 1);
                }
                if buf.ends_with(b"\r") {
                    lf = Some(lf.map_or(n - 1, |l| l.max(n - 1)));
                }
                lf.unwrap_or(p).max(p).max(n.saturating_sub(MAX_START_LINE))
            }
        };
        if let Some(msg) = self.msg.as_mut() {
            msg.body_size += (keep - p) as i64;
        }
        keep
    }

    pub(super) fn enter_scan(&mut self) {
        self.buf.clear();
        self.marks.clear();
        self.state = State::Scan;
    }

    /// A header block cut short (close, gap: `flag` "gap"; too large: "truncated"):
    /// return what its start line says (recovery.py _partial_head). It begins at `base`
    /// in the buffer and runs to its end (at most MAX_HEADER_BYTES).
    pub(super) fn partial_head(&mut self, base: usize, flag: &'static str, out: &mut Out) {
        let stop = self.buf.len().min(base.saturating_add(MAX_HEADER_BYTES));
        let rest = &self.buf[base.min(stop)..stop];
        let start = rest
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(rest.len());
        let eol = find_crlf(&rest[start..]).map(|i| i + start);
        let line = &rest[start..eol.unwrap_or(rest.len())];
        let mut msg = Message::default();
        let ok = if self.is_request {
            parse_request_line(line, &mut msg)
        } else {
            parse_status_line(line, &mut msg)
        };
        if ok.is_err() {
            return;
        }
        if let Some(eol) = eol {
            if let Some(last) = memchr::memmem::rfind(rest, b"\r\n").filter(|&l| l > eol) {
                if let Ok(h) = fields(&rest[eol + 2..last + 2]) {
                    msg.headers = h;
                }
            }
        }
        let len = rest.len();
        msg.start_ts_ns = self.ts_at(base + start);
        msg.end_ts_ns = self.ts_at(base + len - 1);
        if self.is_request {
            self.announced = false; // a new start line (recovery.py: _start_line)
            self.announce(&msg, false);
        } else if msg.status_code >= 200 || msg.status_code == 101 {
            self.answer(msg.start_ts_ns);
        }
        if flag.is_empty() {
            msg.flags.insert("incomplete");
        } else {
            msg.flags.insert(flag);
        }
        if self.gap_next && flag != "truncated" {
            msg.flags.insert("gap");
            self.gap_next = false;
        }
        out.push((msg, self.link));
        self.link = 0;
        self.popped = false;
    }

    /// A header block longer than MAX_HEADER_BYTES at `p`: if its start line is one,
    /// return that message flagged "truncated" with the header lines that fit, and look
    /// for the next message (recovery.py _head_too_large).
    pub(super) fn head_too_large(&mut self, p: usize, out: &mut Out) -> Result<usize, usize> {
        let stop = self.buf.len().min(p + MAX_HEADER_BYTES);
        let head = &self.buf[p..stop];
        let line = find_crlf(head).map_or(&head[..0], |e| &head[..e]);
        let mut probe = Message::default();
        let ok = if self.is_request {
            parse_request_line(line, &mut probe)
        } else {
            parse_status_line(line, &mut probe)
        };
        if ok.is_err() {
            return Err(p);
        }
        self.parse_errors += 1;
        self.partial_head(p, "truncated", out);
        self.seen = true;
        self.state = State::Scan;
        Ok(p + 1)
    }

    /// The connection ended.
    pub fn close(&mut self, ts_ns: u64, out: &mut Out) {
        self.ts = ts_ns;
        if self.state == State::Close {
            self.complete(Some(self.last_ts), out);
        } else if let Some(mut msg) = self.msg.take() {
            if self.state != State::ChunkScan {
                // else: its framing was lost, its end is unknown ("gap")
                msg.flags.insert("incomplete");
            }
            self.finish_cut_keep(&mut msg);
            out.push((msg, self.link));
            self.link = 0;
        } else if self.state == State::Idle && self.buf.iter().any(|&c| c != b'\r' && c != b'\n') {
            self.partial_head(0, "", out);
        }
        self.state = State::Dead;
        self.buf.clear();
        self.marks.clear();
        self.held.clear();
    }

    pub(super) fn finish_cut_keep(&self, msg: &mut Message) {
        msg.end_ts_ns = self.last_ts;
    }
}
