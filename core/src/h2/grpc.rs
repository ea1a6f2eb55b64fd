//! gRPC over HTTP/2 (the gRPC "PROTOCOL-HTTP2" spec): the call's service and method from
//! `:path`, its length-prefixed messages (compressed ones decompressed: gzip, deflate), its
//! status and message from the trailers (or the headers of a trailers-only response).
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io::Read;

/// One call as the RRPair's `grpc` field holds it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: String,
    pub method: String,
    /// grpc-status, or -1: none seen
    pub status: i32,
    pub status_message: String,
    pub encoding: String,
    pub request_messages: Vec<Vec<u8>>,
    pub response_messages: Vec<Vec<u8>>,
}

pub fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        c == "application/grpc"
            || c.starts_with("application/grpc+")
            || c.starts_with("application/grpc;")
    })
}

/// `/package.Service/Method` -> (service, method).
pub fn split_path(path: &str) -> (String, String) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.rsplit_once('/') {
        Some((s, m)) => (s.to_string(), m.to_string()),
        None => (p.to_string(), String::new()),
    }
}

/// grpc-message is percent-encoded (gRPC spec): decode it (invalid UTF-8 kept lossily).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Messages of one direction's body. `encoding`: grpc-encoding of that direction. `cut`:
/// the body was cut to max_body (a partial last message is then expected, and left out).
/// Flags: "truncated", "grpc_unknown_encoding", "grpc_bad_message".
pub fn messages(
    body: &[u8],
    encoding: &str,
    cut: bool,
    limit: usize,
    flags: &mut BTreeSet<&'static str>,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = 0;
    let mut total = 0usize;
    while p < body.len() {
        if body.len() - p < 5 {
            flags.insert(if cut { "truncated" } else { "grpc_bad_message" });
            break;
        }
        let compressed = body[p];
        let n = u32::from_be_bytes([body[p + 1], body[p + 2], body[p + 3], body[p + 4]]) as usize;
        if body.len() - p - 5 < n {
            flags.insert(if cut { "truncated" } else { "grpc_bad_message" });
            break;
        }
        let raw = &body[p + 5..p + 5 + n];
        p += 5 + n;
        let room = limit.saturating_sub(total);
        let msg = match compressed {
            0 => raw.to_vec(),
            1 => match decompress(raw, encoding, room, flags) {
                Some(m) => m,
                None => raw.to_vec(),
            },
            _ => {
                flags.insert("grpc_bad_message");
                raw.to_vec()
            }
        };
        total += msg.len();
        if total > limit {
            flags.insert("truncated");
            break;
        }
        out.push(msg);
    }
    out
}

/// A compressed message's bytes, at most `room` of them (None: kept as it came).
fn decompress(
    raw: &[u8],
    encoding: &str,
    room: usize,
    flags: &mut BTreeSet<&'static str>,
) -> Option<Vec<u8>> {
    let cap = room as u64 + 1;
    let mut out = Vec::new();
    let ok = match encoding {
        "gzip" => flate2::read::GzDecoder::new(raw)
            .take(cap)
            .read_to_end(&mut out)
            .is_ok(),
        "deflate" => {
            // zlib framing (what gRPC implementations send); raw deflate as a fallback
            let z = flate2::read::ZlibDecoder::new(raw)
                .take(cap)
                .read_to_end(&mut out)
                .is_ok();
            z || {
                out.clear();
                flate2::read::DeflateDecoder::new(raw)
                    .take(cap)
                    .read_to_end(&mut out)
                    .is_ok()
            }
        }
        _ => {
            flags.insert("grpc_unknown_encoding");
            return None;
        }
    };
    if !ok {
        flags.insert("grpc_bad_message");
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn framed(flag: u8, m: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend((m.len() as u32).to_be_bytes());
        v.extend(m);
        v
    }

    #[test]
    fn paths_and_status_messages() {
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            ("helloworld.Greeter".into(), "SayHello".into())
        );
        assert_eq!(percent_decode("not%20found%3A%20x"), "not found: x");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
        assert!(is_grpc(Some("application/grpc+proto")));
        assert!(!is_grpc(Some("application/grpc-web")));
    }

    #[test]
    fn messages_plain_gzip_deflate_unknown() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped").unwrap();
        let gz = gz.finish().unwrap();
        let mut body = framed(0, b"one");
        body.extend(framed(1, &gz));
        body.extend(framed(0, b""));
        let mut f = BTreeSet::new();
        let m = messages(&body, "gzip", false, 1 << 20, &mut f);
        assert_eq!(m, vec![b"one".to_vec(), b"zipped".to_vec(), vec![]]);
        assert!(f.is_empty());

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"deflated").unwrap();
        let m = messages(
            &framed(1, &z.finish().unwrap()),
            "deflate",
            false,
            1 << 20,
            &mut f,
        );
        assert_eq!(m, vec![b"deflated".to_vec()]);

        let m = messages(&framed(1, b"??"), "snappy", false, 1 << 20, &mut f);
        assert_eq!(m, vec![b"??".to_vec()]);
        assert!(f.contains("grpc_unknown_encoding"));
    }

    #[test]
    fn cut_bodies_and_bombs() {
        let mut f = BTreeSet::new();
        let mut body = framed(0, b"whole");
        body.extend(&framed(0, b"partial")[..6]);
        assert_eq!(
            messages(&body, "", true, 1 << 20, &mut f),
            vec![b"whole".to_vec()]
        );
        assert!(f.contains("truncated"));
        // a gzip bomb stops at the limit
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 10 << 20]).unwrap();
        let mut f = BTreeSet::new();
        let m = messages(
            &framed(1, &gz.finish().unwrap()),
            "gzip",
            false,
            1000,
            &mut f,
        );
        assert!(m.is_empty() && f.contains("truncated"));
    }
}
