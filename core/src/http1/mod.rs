//! HTTP/1.x message parsing (sans-IO): heads with httparse, framing by nodetap's rules
//! (the mirror of agent/protocols/http1: Content-Length, chunked with trailers,
//! close-delimited, HEAD/1xx/204/304, 100-continue, pipelining, keep-alive, Upgrade, parse
//! errors and gaps with resynchronisation on the next start line).
//!
//! Names and values are the wire bytes decoded as ISO-8859-1; values keep trailing
//! whitespace as the Python parser's FIELD pattern does.
//!
//! One job per module:
//!
//! - `machine`: the parser state machine (feeding, pumping the buffer, parse errors)
//! - `head`: message heads (start line, header fields, checks of a partial head)
//! - `framing`: what the headers say about the body; request and response framing
//! - `chunked`: chunk-size lines and their extensions
//! - `chunk_resync`: finding chunked framing again after a gap (proven chunk-size lines)
//! - `recovery`: gaps, skipped bytes, resync on the next start line, the end of a stream
//! - `upgrade`: holding bytes after a request that may switch protocols; taking the rest
#![forbid(unsafe_code)]

mod chunk_resync;
mod chunked;
mod framing;
mod head;
mod machine;
mod recovery;
mod upgrade;

pub use framing::Framing;
pub use head::is_tchar;

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
    /// The chunk framing was lost in a gap: looking for a proven chunk-size line or a
    /// start line (chunk_resync.rs).
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
const MAX_START_LINE: usize = 16 * 1024;

const METHODS: &str = "GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|LOCK|UNLOCK|SEARCH|REPORT|PURGE|MKCALENDAR|LINK|UNLINK|QUERY";

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
    /// ChunkScan: the buffer begins where a hole ended.
    chunk_at_hole: bool,
    /// ChunkScan: where a candidate waiting for bytes begins.
    chunk_keep: Option<usize>,
}

pub type Out = Vec<(Message, i64)>;
