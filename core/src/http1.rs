//! HTTP/1.x message parsing (sans-IO): heads with httparse, framing by nodetap's rules
//! (the mirror of agent/protocols/http1: Content-Length, chunked with trailers,
//! close-delimited, HEAD/1xx/204/304, 100-continue, pipelining, keep-alive, Upgrade, parse
//! errors and gaps with resynchronisation on the next start line).
//!
//! Names and values are the wire bytes decoded as ISO-8859-1; values keep trailing
//! whitespace as the Python parser's FIELD pattern does.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, VecDeque};
use std::sync::OnceLock;

pub type Headers = Vec<(String, String)>;
pub type Flags = BTreeSet<&'static str>;

/// Request or response: the fields both share, and the start line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Request: method and target. Response: empty.
    pub method: String,
    pub url: String,
    /// Response: status code and reason. Request: 0 and empty.
    pub status_code: i32,
    pub status_message: String,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub body_size: i64,
    pub trailers: Headers,
    pub start_ts_ns: u64,
    pub end_ts_ns: u64,
    pub flags: Flags,
}

/// What the request side tells the response side about each request head.
#[derive(Debug, Clone)]
pub struct Expect {
    pub method: String,
    pub asks_upgrade: bool,
    pub start_ts_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkCrlf,
    Trailers,
    Close,
    /// Looking for the next start line (after a parse error or a gap).
    Scan,
    /// The chunk framing was lost in a gap: looking for the last chunk or a start line.
    ChunkScan,
    /// Request side, after a request that may switch protocols: bytes wait for the answer.
    Held,
    Dead,
}

/// A parse error.
#[derive(Debug)]
struct Invalid;

/// A parse error at a position of the buffer (where scanning resumes, plus one).
type Step = Result<(), usize>;

pub fn latin1(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if b.is_ascii() => s.to_owned(),
        _ => b.iter().map(|&c| c as char).collect(),
    }
}

/// Where CRLF CRLF first occurs in `h` (a finder built once).
fn find_end(h: &[u8]) -> Option<usize> {
    static F: OnceLock<memchr::memmem::Finder<'static>> = OnceLock::new();
    F.get_or_init(|| memchr::memmem::Finder::new(b"\r\n\r\n"))
        .find(h)
}

/// Where CRLF first occurs in `h`.
fn find_crlf(h: &[u8]) -> Option<usize> {
    static F: OnceLock<memchr::memmem::Finder<'static>> = OnceLock::new();
    F.get_or_init(|| memchr::memmem::Finder::new(b"\r\n"))
        .find(h)
}

/// A longer start line plus header block is flagged "truncated", then skipped.
const MAX_HEADER_BYTES: usize = 1 << 20;
const MAX_CHUNK_LINE: usize = 4096;
/// The end of a chunk's data, the last chunk, no trailers (recovery.py LAST_CHUNK).
const LAST_CHUNK: &[u8] = b"\n0\r\n\r\n";
const MAX_START_LINE: usize = 16 * 1024;

const METHODS: &str = "GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|LOCK|UNLOCK|SEARCH|REPORT|PURGE|MKCALENDAR|LINK|UNLINK|QUERY";

/// Where the resynchroniser may start again (syntax.py REQ_START / RESP_START); the
/// `regex` crate matches in linear time.
fn start_pattern(is_request: bool) -> &'static regex::bytes::Regex {
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

#[derive(Debug)]
pub struct Parser {
    pub is_request: bool,
    max_body: u64,
    state: State,
    buf: Vec<u8>,
    /// (offset in buf, ts) of each fed piece still in buf
    marks: Vec<(usize, u64)>,
    msg: Option<Message>,
    room: i64,
    /// timestamp of the piece being parsed
    ts: u64,
    /// timestamp of the piece holding the last byte consumed
    last_ts: u64,
    gap_next: bool,
    after_gap: bool,
    seen: bool,
    closing: bool,
    announced: bool,
    popped: bool,
    method: Option<String>,
    link: i64,
    /// Response side: requests whose heads were seen, waiting for their answer.
    pub expects: VecDeque<Expect>,
    /// Request side: the current request asked to switch protocols.
    upgrade_req: bool,
    /// Response side: the request being answered asked to switch protocols.
    asked_upgrade: bool,
    held: Vec<(Option<Vec<u8>>, u64, u64)>,
    pub failed: bool,
    pub upgraded: bool,
    /// Request side: heads seen (for the response side's expects), taken by the stitcher.
    pub heads: Vec<Expect>,
    /// The response answered a request that asked to upgrade and did not: resume requests.
    pub refused: bool,
    pub parse_errors: u64,
    /// The stream may begin mid-message (a connection opened before the capture): bytes
    /// are skipped up to a start line, and errors before the first message do not fail it.
    resync: bool,
}

pub type Out = Vec<(Message, i64)>;

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
        }
    }

    fn ts_at(&self, pos: usize) -> u64 {
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
    fn on_error(&mut self, at: usize, out: &mut Out) -> Option<usize> {
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

    fn finish_cut(&mut self, mut msg: Message, out: &mut Out) {
        msg.end_ts_ns = self.last_ts;
        out.push((msg, self.link));
        self.link = 0;
        self.popped = false;
    }

    fn run(&mut self, pos: &mut usize, out: &mut Out) -> Step {
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
                    let last = memchr::memmem::find(&self.buf[p..], LAST_CHUNK).map(|i| p + i);
                    let start = start_pattern(self.is_request)
                        .find_at(&self.buf, p)
                        .map(|m| m.start());
                    let ends_first = match (last, start) {
                        (Some(l), Some(s)) => l < s,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if let (true, Some(l)) = (ends_first, last) {
                        let at = l + LAST_CHUNK.len();
                        let ts = self.ts_at(at - 1);
                        self.complete(Some(ts), out);
                        *pos = at;
                    } else if let Some(s) = start {
                        if let Some(msg) = self.msg.take() {
                            self.finish_cut(msg, out);
                        }
                        self.state = State::Idle;
                        self.closing = false;
                        *pos = s;
                    } else {
                        // keep a tail that may begin either (from the last LF)
                        let last_lf = memchr::memrchr(b'\n', &self.buf[p..]).map_or(p, |i| p + i);
                        *pos = last_lf.max(p).max(n.saturating_sub(MAX_START_LINE));
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

    /// A header block not complete yet: reject it now if what came already is invalid
    /// (head.py _check_partial).
    fn check_partial(&self, pos: usize) -> Result<(), Invalid> {
        let buf = &self.buf[pos..];
        let Some(eol) = find_crlf(buf) else {
            let line = buf;
            if memchr::memchr(b'\n', line).is_some()
                || memchr::memchr(b'\r', &line[..line.len().saturating_sub(1)]).is_some()
            {
                return Err(Invalid);
            }
            return self.check_prefix(line);
        };
        let mut msg = Message::default();
        if self.is_request {
            parse_request_line(&buf[..eol], &mut msg)?;
        } else {
            parse_status_line(&buf[..eol], &mut msg)?;
        }
        if matches!(buf.get(eol + 2), Some(b' ' | b'\t')) {
            return Err(Invalid);
        }
        let last = memchr::memmem::rfind(&buf[eol + 2..], b"\r\n").map(|i| i + eol + 2);
        if let Some(last) = last {
            let h = fields(&buf[eol + 2..last + 2])?;
            semantics(&h, &msg.version)?;
        }
        let tail = &buf[last.unwrap_or(eol) + 2..];
        if memchr::memchr(b'\n', tail).is_some()
            || memchr::memchr(b'\r', &tail[..tail.len().saturating_sub(1)]).is_some()
        {
            return Err(Invalid);
        }
        Ok(())
    }

    fn check_prefix(&self, line: &[u8]) -> Result<(), Invalid> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.is_request {
            let parts: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
            let method = parts[0];
            if method.len() > 32 || !method.iter().all(|&c| is_tchar(c)) {
                return Err(Invalid);
            }
            if parts.len() > 3
                || (parts.len() == 3
                    && !(b"HTTP/1.1".starts_with(parts[2]) || b"HTTP/1.0".starts_with(parts[2])))
            {
                return Err(Invalid);
            }
        } else {
            let k = line.len().min(7);
            if line[..k] != b"HTTP/1."[..k] {
                return Err(Invalid);
            }
        }
        Ok(())
    }

    fn body(&mut self, pos: usize, len: usize) {
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

    /// The head `buf[start..end]` (through its CRLF CRLF): the message, its framing.
    fn head(&mut self, start: usize, end: usize, out: &mut Out) -> Result<usize, usize> {
        let eol = find_crlf(&self.buf[start..end]).map_or(end, |i| start + i);
        let mut msg = Message::default();
        let line = &self.buf[start..eol];
        if self.is_request {
            parse_request_line(line, &mut msg).map_err(|_| start)?;
        } else {
            parse_status_line(line, &mut msg).map_err(|_| start)?;
        }
        self.seen = true;
        self.announced = false;
        msg.start_ts_ns = self.ts_at(start);
        if self.gap_next {
            msg.flags.insert("gap");
            self.gap_next = false;
        }
        self.room = self.max_body as i64;
        self.last_ts = self.ts;
        let block = &self.buf[start..end];
        let headers = match httparse_fields(block, self.is_request) {
            Some(h) => Ok(h),
            None => fields(&block[eol - start + 2..block.len() - 2]),
        };
        let sem = match headers {
            Ok(h) => {
                msg.headers = h;
                semantics(&msg.headers, &msg.version)
            }
            Err(e) => Err(e),
        };
        let res = if self.is_request {
            self.frame_request(msg, sem, out)
        } else {
            self.frame_response(msg, sem, end, out)
        };
        res.map(|()| end).map_err(|_| end - 1)
    }

    fn announce(&mut self, msg: &Message, upgrade: bool) {
        if !self.announced {
            self.announced = true;
            self.heads.push(Expect {
                method: msg.method.clone(),
                asks_upgrade: upgrade,
                start_ts_ns: msg.start_ts_ns,
            });
        }
    }

    fn frame_request(
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

    fn frame_response(
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
    fn answer(&mut self, start_ts: u64) -> Option<String> {
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

    fn drop_method(&mut self) -> String {
        let e = self.expects.pop_front().expect("a waiting request");
        if e.asks_upgrade {
            self.asked_upgrade = true;
        }
        e.method
    }

    fn complete(&mut self, end_ts: Option<u64>, out: &mut Out) {
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
                State::ChunkData(rem) => msg.body_size += rem as i64,
                _ => {}
            }
        }
        let chunked = matches!(
            self.state,
            State::ChunkData(_) | State::ChunkSize | State::ChunkCrlf
        );
        if chunked {
            if let Some(msg) = self.msg.as_mut() {
                // the chunk framing is lost: find the last chunk again (or a start line)
                msg.flags.insert("gap");
                self.room = -1;
                self.after_gap = true;
                self.buf.clear();
                self.marks.clear();
                self.state = State::ChunkScan;
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

    fn enter_scan(&mut self) {
        self.buf.clear();
        self.marks.clear();
        self.state = State::Scan;
    }

    /// A header block cut short (close, gap: `flag` "gap"; too large: "truncated"):
    /// return what its start line says (recovery.py _partial_head). It begins at `base`
    /// in the buffer and runs to its end (at most MAX_HEADER_BYTES).
    fn partial_head(&mut self, base: usize, flag: &'static str, out: &mut Out) {
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
    fn head_too_large(&mut self, p: usize, out: &mut Out) -> Result<usize, usize> {
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
            msg.flags.insert("incomplete");
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

    fn finish_cut_keep(&self, msg: &mut Message) {
        msg.end_ts_ns = self.last_ts;
    }
}

/// The size on a chunk-size line (with optional extensions).
fn chunk_size(line: &[u8]) -> Result<u64, Invalid> {
    let (size, ext) = match memchr::memchr(b';', line) {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(Invalid);
    }
    if let Some(ext) = ext {
        if ext.is_empty() || ext.ends_with(b";") || !chunk_ext_ok(ext) {
            return Err(Invalid);
        }
    }
    let mut v = 0u64;
    for &c in size {
        v = v << 4 | u64::from((c as char).to_digit(16).unwrap_or(0));
    }
    Ok(v)
}

/// syntax.py CHUNK_EXT: ";"-separated `name[=value]` items, token characters, a value may
/// end in one quoted string.
fn chunk_ext_ok(ext: &[u8]) -> bool {
    static EXT: OnceLock<regex::bytes::Regex> = OnceLock::new();
    let re = EXT.get_or_init(|| {
        let token = r#"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"#;
        let quoted = r#""(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*""#;
        let item = format!("(?:{token})?(?:=(?:{token})?(?:{quoted})?)?");
        regex::bytes::Regex::new(&format!("(?-u)^(?:{item};)*{item}$")).expect("CHUNK_EXT")
    });
    re.is_match(ext)
}

#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub length: Option<u64>,
    pub chunked: bool,
    pub te: bool,
    pub keep_alive: bool,
    pub asks_upgrade: bool,
}

fn tokens(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(|t| t.trim_matches([' ', '\t']).to_ascii_lowercase())
}

/// What the headers say about the body and the connection (head.py _semantics).
fn semantics(headers: &Headers, version: &str) -> Result<Framing, Invalid> {
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

pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn version_of(b: &[u8]) -> Result<&'static str, Invalid> {
    match b {
        b"HTTP/1.1" => Ok("HTTP/1.1"),
        b"HTTP/1.0" => Ok("HTTP/1.0"),
        _ => Err(Invalid),
    }
}

/// `method SP target SP HTTP/1.x` (syntax.py REQ_LINE).
fn parse_request_line(line: &[u8], msg: &mut Message) -> Result<(), Invalid> {
    let mut parts = line.split(|&c| c == b' ');
    let (Some(m), Some(u), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid);
    };
    if m.is_empty() || !m.iter().all(|&c| is_tchar(c)) {
        return Err(Invalid);
    }
    if u.is_empty() || !u.iter().all(|&c| (0x21..=0x7e).contains(&c) || c >= 0x80) {
        return Err(Invalid);
    }
    msg.version = version_of(v)?.to_string();
    msg.method = latin1(m);
    msg.url = latin1(u);
    Ok(())
}

/// `HTTP/1.x SP 3DIGIT [SP reason]` (syntax.py RESP_LINE).
fn parse_status_line(line: &[u8], msg: &mut Message) -> Result<(), Invalid> {
    if line.len() < 12 || line[8] != b' ' {
        return Err(Invalid);
    }
    msg.version = version_of(&line[..8])?.to_string();
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(Invalid);
    }
    msg.status_code = code.iter().fold(0i32, |a, &c| a * 10 + i32::from(c - b'0'));
    match line.get(12) {
        None => {}
        Some(b' ') => msg.status_message = latin1(&line[13..]),
        Some(_) => return Err(Invalid),
    }
    Ok(())
}

/// The header lines of a head block (start line, headers, final CRLF CRLF) read with
/// httparse; values are extended to their CRLF (nodetap keeps trailing whitespace). None
/// when httparse refuses the block: nodetap's own field grammar decides then.
fn httparse_fields(block: &[u8], is_request: bool) -> Option<Headers> {
    let mut n = 64;
    loop {
        let mut headers = vec![httparse::EMPTY_HEADER; n];
        let res = if is_request {
            httparse::Request::new(&mut headers)
                .parse(block)
                .map(|s| s.is_complete())
        } else {
            httparse::Response::new(&mut headers)
                .parse(block)
                .map(|s| s.is_complete())
        };
        match res {
            Ok(true) => {}
            Err(httparse::Error::TooManyHeaders) if n < 4096 => {
                n *= 4;
                continue;
            }
            _ => return None,
        }
        let base = block.as_ptr() as usize;
        let mut out = Vec::new();
        for h in headers.iter().take_while(|h| !h.name.is_empty()) {
            if h.value.is_empty() {
                out.push((h.name.to_string(), String::new()));
                continue;
            }
            let at = (h.value.as_ptr() as usize).checked_sub(base)?;
            let eol = find_crlf(block.get(at..)?)? + at;
            let v = &block[at..eol];
            if v.iter()
                .any(|&c| c != b'\t' && !(0x20..=0x7e).contains(&c) && c < 0x80)
            {
                return None;
            }
            out.push((h.name.to_string(), latin1(v)));
        }
        return Some(out);
    }
}

/// Header (or trailer) lines, each ending in CRLF (syntax.py FIELD).
fn fields(block: &[u8]) -> Result<Headers, Invalid> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let eol = find_crlf(&block[pos..]).ok_or(Invalid)? + pos;
        let line = &block[pos..eol];
        let colon = memchr::memchr(b':', line).ok_or(Invalid)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            return Err(Invalid);
        }
        let mut v = &line[colon + 1..];
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        if !v
            .iter()
            .all(|&c| c == b'\t' || (0x20..=0x7e).contains(&c) || c >= 0x80)
        {
            return Err(Invalid);
        }
        out.push((latin1(name), latin1(v)));
        pos = eol + 2;
    }
    Ok(out)
}
