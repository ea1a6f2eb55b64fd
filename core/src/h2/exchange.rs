//! What one HTTP/2 stream becomes (its request and response sides, flags) and the bounds of
//! a connection's decoder.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: u64,
    /// streams open at once (more are not followed: counted, flagged)
    pub max_streams: usize,
    /// one header block with its CONTINUATIONs, encoded
    pub max_block: usize,
    /// one decoded header list (RFC 7541 sizes)
    pub max_list: usize,
    /// body bytes held for the open streams of a connection
    pub max_held: usize,
}

impl Limits {
    pub fn new(max_body: u64) -> Self {
        Self {
            max_body,
            max_streams: 1024,
            max_block: 256 << 10,
            max_list: 64 << 10,
            max_held: 64 << 20,
        }
    }
}

pub type Headers = Vec<(String, String)>;

/// One side of a stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Msg {
    pub headers: Headers,
    pub trailers: Headers,
    pub body: Vec<u8>,
    pub body_size: i64,
    pub start_ts_ns: u64,
    pub end_ts_ns: u64,
    pub seen: bool,
    pub ended: bool,
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn cut(&self) -> bool {
        (self.body.len() as i64) < self.body_size
    }
}

/// One stream: the exchange an RRPair is made of.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stream {
    pub id: u32,
    pub req: Msg,
    pub res: Msg,
    pub flags: BTreeSet<&'static str>,
    /// RST_STREAM's error code
    pub reset: Option<u32>,
}
