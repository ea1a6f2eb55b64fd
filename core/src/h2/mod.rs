//! HTTP/2 and gRPC, decoded from the same ordered streams as HTTP/1.x (src/decoder.rs
//! picks this decoder with `detect`). Sans-IO modules, each with one job:
//!
//! - `frames`: bytes to frames (preface, padding, fixed-size payloads, resync after gaps)
//! - `hpack`: header blocks through loona-hpack, one table per direction, unknown entries
//! - `exchange`: one stream's request and response; the decoder's bounds
//! - `conn`: frames to streams (CONTINUATION, RST_STREAM, GOAWAY, trailers, push), bounded
//! - `grpc`: a stream's gRPC call (service, method, messages, status)
//! - `rrpair`: a stream to an RRPair ("http2" or "grpc")
#![forbid(unsafe_code)]

pub mod conn;
pub mod exchange;
pub mod frames;
pub mod grpc;
pub mod hpack;
pub mod rrpair;

use conn::{H2Conn, Limits};

/// What a connection was found to be.
#[derive(Debug, Default)]
pub enum State {
    /// no bytes seen yet
    #[default]
    Undecided,
    /// not HTTP/2 (HTTP/1.x: the stitcher's)
    No,
    Yes(Box<H2Conn>),
}

/// The first bytes of a connection (`is_req`: of its requests) say HTTP/2: the client
/// preface (prior knowledge), or, on a connection joined mid-way, frames (a plausible frame
/// header followed by another one or by the end of the bytes). None: not HTTP/2.
pub fn detect(data: &[u8], is_req: bool, max_body: u64) -> Option<Box<H2Conn>> {
    let n = data.len().min(frames::PREFACE.len());
    if is_req && n >= 4 && data[..n] == frames::PREFACE[..n] {
        return Some(Box::new(H2Conn::new(Limits::new(max_body), true, true)));
    }
    if looks_like_frames(data) {
        return Some(Box::new(H2Conn::new(Limits::new(max_body), false, false)));
    }
    None
}

/// The exchange that switched an HTTP/1.1 connection to HTTP/2 (`Upgrade: h2c`, answered
/// 101): its request, which becomes stream 1 (RFC 7540 §3.2), with `:method` and `:path`
/// put before its HTTP/1.1 headers.
pub fn upgrade_request(ex: &crate::stitch::Exchange) -> Option<conn::Msg> {
    let (req, res) = (ex.request.as_ref()?, ex.response.as_ref()?);
    let h2c = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("upgrade")
            && v.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c"))
    });
    if res.status_code != 101 || !h2c {
        return None;
    }
    let mut headers = vec![
        (":method".to_string(), req.method.clone()),
        (":path".to_string(), req.url.clone()),
    ];
    headers.extend(req.headers.iter().cloned());
    Some(conn::Msg {
        headers,
        body: req.body.clone(),
        body_size: req.body_size,
        start_ts_ns: req.start_ts_ns,
        end_ts_ns: req.end_ts_ns,
        seen: true,
        ended: true,
        ..conn::Msg::default()
    })
}

/// The HTTP/2 connection after an `Upgrade: h2c`: the client's preface follows, both
/// tables start empty, the upgrade request is stream 1.
pub fn upgraded(max_body: u64, req: conn::Msg) -> Box<H2Conn> {
    let mut c = H2Conn::new(Limits::new(max_body), true, true);
    c.upgraded_request(req);
    Box::new(c)
}

fn looks_like_frames(data: &[u8]) -> bool {
    let max_len = 1 << 16;
    let mut p = 0;
    let mut seen = 0;
    while p + 9 <= data.len() {
        let h = frames::head(&data[p..p + 9]);
        if !frames::plausible(&h, max_len) || h.kind > frames::CONTINUATION {
            return false;
        }
        seen += 1;
        p += 9 + h.len;
        if seen == 3 {
            return true;
        }
    }
    seen > 0 && p == data.len()
}

#[cfg(test)]
mod tests;
