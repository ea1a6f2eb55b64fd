//! HTTP/2 frames (RFC 9113 §4, §6): one direction's ordered bytes split into frames, the
//! client preface, padding and the fixed-size payloads. Sans-IO, bounded: a frame longer
//! than the protocol's maximum (2^24-1) cannot be, and one direction never holds more than
//! one frame (plus a header) of bytes.
#![forbid(unsafe_code)]

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// The largest frame payload the protocol allows (SETTINGS_MAX_FRAME_SIZE's ceiling).
pub const MAX_FRAME: usize = (1 << 24) - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
    /// capture time of the piece that completed the frame
    pub ts_ns: u64,
}

/// A frame that cannot be: the connection is given up (RFC 9113 connection errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// the client direction did not start with the preface
    BadPreface,
    /// padding longer than the payload
    BadPadding,
    /// a fixed-size frame of the wrong size, or a frame on the wrong stream
    BadFrame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

pub fn head(b: &[u8]) -> Head {
    Head {
        len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
        kind: b[3],
        flags: b[4],
        stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
    }
}

/// A frame header that a peer could have sent: a known type, a sane size and stream (used
/// to find the frames again after bytes were lost).
pub fn plausible(h: &Head, max_len: usize) -> bool {
    let conn_level = matches!(h.kind, SETTINGS | PING | GOAWAY);
    let stream_level = matches!(
        h.kind,
        DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION
    );
    h.len <= max_len
        && ((conn_level && h.stream == 0) || (stream_level && h.stream != 0) || h.kind == 8)
        && match h.kind {
            SETTINGS => h.len.is_multiple_of(6) && h.flags & !1 == 0,
            PING => h.len == 8,
            PRIORITY => h.len == 5,
            RST_STREAM | WINDOW_UPDATE => h.len == 4,
            GOAWAY => h.len >= 8,
            _ => true,
        }
}

/// One direction's bytes in, whole frames out.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// bytes of the client preface still expected (0: none, or seen)
    preface_left: usize,
    /// bytes to drop: the rest of a frame a gap cut into
    skip: usize,
    skipping: Option<Head>,
    /// frame boundaries are lost (a gap): find them again
    pub lost: bool,
    /// frames cut by gaps
    pub damaged: u64,
    /// the preface may come or not (the server spoke first: we cannot tell yet whether the
    /// connection is seen from its start)
    preface_optional: bool,
    /// the whole client preface was seen
    pub saw_preface: bool,
}

impl FrameReader {
    pub fn new(expect_preface: bool) -> Self {
        Self {
            buf: Vec::new(),
            preface_left: if expect_preface { PREFACE.len() } else { 0 },
            skip: 0,
            skipping: None,
            lost: false,
            damaged: 0,
            preface_optional: false,
            saw_preface: false,
        }
    }

    /// A client direction that may start with the preface, or with frames.
    pub fn maybe_preface() -> Self {
        let mut r = Self::new(true);
        r.preface_optional = true;
        r
    }

    /// The header of the frame being read, if known.
    pub fn current(&self) -> Option<Head> {
        if self.skip > 0 {
            return self.skipping;
        }
        (self.buf.len() >= 9).then(|| head(&self.buf[..9]))
    }

    /// Bytes held (at most one frame's).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// The next bytes of the direction; the frames completed by them.
    pub fn push(&mut self, mut data: &[u8], ts_ns: u64) -> Result<Vec<Frame>, FrameError> {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        if self.preface_left > 0 && !data.is_empty() {
            let at = PREFACE.len() - self.preface_left;
            let n = self.preface_left.min(data.len());
            if data[..n] != PREFACE[at..at + n] {
                if !self.preface_optional || at > 0 {
                    return Err(FrameError::BadPreface);
                }
                self.preface_left = 0;
            } else {
                self.preface_left -= n;
                data = &data[n..];
                self.saw_preface = self.preface_left == 0;
            }
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        if self.lost && !self.resync() {
            return Ok(out);
        }
        let mut pos = 0;
        while self.buf.len() - pos >= 9 {
            let h = head(&self.buf[pos..pos + 9]);
            if self.buf.len() - pos - 9 < h.len {
                break;
            }
            let payload = self.buf[pos + 9..pos + 9 + h.len].to_vec();
            pos += 9 + h.len;
            out.push(Frame {
                kind: h.kind,
                flags: h.flags,
                stream: h.stream,
                payload,
                ts_ns,
            });
        }
        self.buf.drain(..pos);
        Ok(out)
    }

    /// `n` bytes of the direction were lost. Within the frame being read the boundaries
    /// are kept (that frame is dropped, counted in `damaged`); past it they are lost and
    /// `resync` looks for them. Returns whether the boundaries were lost.
    pub fn gap(&mut self, n: u64) -> bool {
        self.damaged += 1;
        if self.preface_left > 0 {
            self.preface_left = 0;
            self.lost = true;
        }
        if n == 0 || self.lost {
            self.buf.clear();
            self.skip = 0;
            self.lost = true;
            return true;
        }
        if self.skip > 0 {
            if n <= self.skip as u64 {
                self.skip -= n as usize;
                return false;
            }
            // past the end of the frame being skipped: the next header is lost
            self.skip = 0;
            self.lost = true;
            return true;
        }
        if self.buf.len() >= 9 {
            let h = head(&self.buf[..9]);
            let frame_end = 9 + h.len;
            let have = self.buf.len() as u64;
            if have + n <= frame_end as u64 {
                self.skip = frame_end - (have + n) as usize;
                self.skipping = Some(h);
                self.buf.clear();
                return false;
            }
        }
        self.buf.clear();
        self.lost = true;
        true
    }

    /// Find a frame header again after lost bytes: a plausible header followed by another
    /// plausible header, or by the end of what is held. False: keep waiting.
    fn resync(&mut self) -> bool {
        let max_len = 1 << 20;
        let mut p = 0;
        while p + 9 <= self.buf.len() {
            let h = head(&self.buf[p..p + 9]);
            if plausible(&h, max_len) {
                let next = p + 9 + h.len;
                if next + 9 <= self.buf.len() {
                    if plausible(&head(&self.buf[next..next + 9]), max_len) {
                        self.buf.drain(..p);
                        self.lost = false;
                        return true;
                    }
                } else {
                    // cannot check yet: keep from here and wait for more
                    self.buf.drain(..p);
                    return false;
                }
            }
            p += 1;
        }
        let keep = self.buf.len().min(8);
        let drop = self.buf.len() - keep;
        self.buf.drain(..drop);
        false
    }
}

/// The payload of a padded frame without its padding.
pub fn unpad(flags: u8, p: &[u8]) -> Result<&[u8], FrameError> {
    if flags & PADDED == 0 {
        return Ok(p);
    }
    let (&n, rest) = p.split_first().ok_or(FrameError::BadPadding)?;
    let n = usize::from(n);
    if n > rest.len() {
        return Err(FrameError::BadPadding);
    }
    Ok(&rest[..rest.len() - n])
}

/// The header block fragment of a HEADERS frame (padding and priority removed).
pub fn headers_fragment(flags: u8, p: &[u8]) -> Result<&[u8], FrameError> {
    let p = unpad(flags, p)?;
    if flags & PRIORITY_FLAG != 0 {
        return p.get(5..).ok_or(FrameError::BadFrame);
    }
    Ok(p)
}

/// (promised stream, header block fragment) of a PUSH_PROMISE frame.
pub fn push_promise(flags: u8, p: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    let p = unpad(flags, p)?;
    if p.len() < 4 {
        return Err(FrameError::BadFrame);
    }
    let id = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
    Ok((id, &p[4..]))
}

/// The error code of RST_STREAM, or the (last stream, error code) of GOAWAY.
pub fn be32(p: &[u8], at: usize) -> Option<u32> {
    let b = p.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// SETTINGS parameters (identifier, value).
pub fn settings(p: &[u8]) -> Result<Vec<(u16, u32)>, FrameError> {
    if !p.len().is_multiple_of(6) {
        return Err(FrameError::BadFrame);
    }
    Ok(p.chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect())
}

/// An RFC 9113 error code's name (RST_STREAM, GOAWAY).
pub fn error_name(code: u32) -> &'static str {
    match code {
        0 => "NO_ERROR",
        1 => "PROTOCOL_ERROR",
        2 => "INTERNAL_ERROR",
        3 => "FLOW_CONTROL_ERROR",
        4 => "SETTINGS_TIMEOUT",
        5 => "STREAM_CLOSED",
        6 => "FRAME_SIZE_ERROR",
        7 => "REFUSED_STREAM",
        8 => "CANCEL",
        9 => "COMPRESSION_ERROR",
        10 => "CONNECT_ERROR",
        11 => "ENHANCE_YOUR_CALM",
        12 => "INADEQUATE_SECURITY",
        13 => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend(stream.to_be_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn splits_frames_anywhere() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(DATA, END_STREAM, 1, b"hello"));
        for cut in 0..bytes.len() {
            let mut r = FrameReader::new(true);
            let mut got = r.push(&bytes[..cut], 1).unwrap();
            got.extend(r.push(&bytes[cut..], 2).unwrap());
            assert_eq!(got.len(), 2, "cut {cut}");
            assert_eq!(got[1].payload, b"hello");
            assert_eq!(settings(&got[0].payload).unwrap(), vec![(3, 100)]);
        }
    }

    #[test]
    fn a_bad_preface_is_an_error() {
        let mut r = FrameReader::new(true);
        assert_eq!(
            r.push(b"GET / HTTP/1.1\r\n", 1),
            Err(FrameError::BadPreface)
        );
    }

    #[test]
    fn a_gap_inside_a_frame_keeps_the_boundaries() {
        let mut r = FrameReader::new(false);
        let f1 = frame(DATA, 0, 1, &[7u8; 100]);
        let f2 = frame(DATA, END_STREAM, 1, b"tail");
        assert!(r.push(&f1[..20], 1).unwrap().is_empty());
        assert!(!r.gap(50));
        let mut rest = f1[70..].to_vec();
        rest.extend(&f2);
        let got = r.push(&rest, 2).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"tail");
    }

    #[test]
    fn lost_boundaries_are_found_again() {
        let mut r = FrameReader::new(false);
        assert!(r.gap(0));
        let mut bytes = vec![0xaa; 13];
        bytes.extend(frame(DATA, 0, 1, b"abc"));
        bytes.extend(frame(PING, 0, 0, &[0; 8]));
        let got = r.push(&bytes, 1).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload, b"abc");
    }

    #[test]
    fn padding_and_priority() {
        assert_eq!(unpad(PADDED, &[2, b'a', 0, 0]).unwrap(), b"a");
        assert_eq!(unpad(PADDED, &[5, b'a']), Err(FrameError::BadPadding));
        assert_eq!(unpad(PADDED, &[]), Err(FrameError::BadPadding));
        let p = [1, 0, 0, 0, 3, 16, b'x', 0];
        assert_eq!(headers_fragment(PADDED | PRIORITY_FLAG, &p).unwrap(), b"x");
        assert_eq!(
            headers_fragment(PRIORITY_FLAG, &[0, 0]),
            Err(FrameError::BadFrame)
        );
    }
}
