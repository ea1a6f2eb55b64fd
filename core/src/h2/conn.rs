//! One HTTP/2 connection seen from outside: the two directions' frames demultiplexed into
//! streams, each stream one exchange (request headers, DATA reassembled, trailers; the
//! response likewise). Flow control, PRIORITY, PING and SETTINGS change nothing a capture
//! shows and are only checked for size. Bounded: streams open at once, header block size
//! (CONTINUATION included), decoded header list, body bytes held per connection.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use super::frames::{self as f, Frame, FrameError, FrameReader, Head};
use super::hpack::HpackDecoder;

pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

pub use super::exchange::{Headers, Limits, Msg, Stream};

struct Pending {
    stream: u32,
    promised: Option<u32>,
    end_stream: bool,
    block: Vec<u8>,
    ts: u64,
    /// too large: dropped, CONTINUATIONs skipped to END_HEADERS
    discard: bool,
}

pub struct H2Conn {
    readers: [FrameReader; 2],
    hpack: [HpackDecoder; 2],
    streams: BTreeMap<u32, Stream>,
    pending: [Option<Pending>; 2],
    limits: Limits,
    held: usize,
    max_id: [u32; 2],
    /// the connection cannot be followed any more (a connection error)
    pub failed: bool,
    /// counters (added to the decoder's)
    pub counts: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, fm: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fm.debug_struct("H2Conn")
            .field("streams", &self.streams.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl H2Conn {
    /// `from_start`: the client direction starts with the preface (else the connection was
    /// joined mid-way, or after an HTTP/1.1 upgrade: both tables start unknown or empty).
    pub fn new(limits: Limits, from_start: bool, tables_known: bool) -> Self {
        Self {
            readers: [
                if from_start {
                    FrameReader::new(true)
                } else {
                    FrameReader::maybe_preface()
                },
                FrameReader::new(false),
            ],
            hpack: [
                HpackDecoder::new(tables_known, limits.max_list),
                HpackDecoder::new(tables_known, limits.max_list),
            ],
            streams: BTreeMap::new(),
            pending: [None, None],
            limits,
            held: 0,
            max_id: [0, 0],
            failed: false,
            counts: BTreeMap::new(),
        }
    }

    /// The upgrade request (HTTP/1.1 `Upgrade: h2c`) is stream 1, half-closed.
    pub fn upgraded_request(&mut self, req: Msg) {
        self.max_id[CLIENT] = 1;
        self.streams.insert(
            1,
            Stream {
                id: 1,
                req,
                ..Stream::default()
            },
        );
    }

    fn count(&mut self, name: &'static str) {
        *self.counts.entry(name).or_insert(0) += 1;
    }

    /// Both HPACK tables are known.
    pub fn tables_trusted(&self) -> bool {
        self.hpack[0].trusted() && self.hpack[1].trusted()
    }

    /// The next bytes of one side (CLIENT or SERVER).
    pub fn feed(&mut self, side: usize, data: &[u8], ts: u64, out: &mut Vec<Stream>) {
        if self.failed {
            return;
        }
        let had_preface = self.readers[side].saw_preface;
        let pushed = self.readers[side].push(data, ts);
        if !had_preface && self.readers[side].saw_preface && !self.tables_trusted() {
            // the server spoke first, and this is the connection's start after all
            let max_list = self.limits.max_list;
            self.hpack = [
                HpackDecoder::new(true, max_list),
                HpackDecoder::new(true, max_list),
            ];
        }
        match pushed {
            Ok(frames) => {
                for fr in frames {
                    self.count("h2_frames");
                    if let Err(e) = self.frame(side, fr, out) {
                        self.fail(e, out);
                        return;
                    }
                }
            }
            Err(e) => self.fail(e, out),
        }
    }

    /// `n` bytes of one side were lost (0: an unknown number).
    pub fn gap(&mut self, side: usize, n: u64, ts: u64) {
        if self.failed {
            return;
        }
        let cur = self.readers[side].current();
        let lost = self.readers[side].gap(n);
        match cur {
            Some(Head {
                kind: f::DATA,
                stream,
                ..
            }) if !lost => {
                if let Some(st) = self.streams.get_mut(&stream) {
                    st.flags.insert("gap");
                }
            }
            _ => {
                // header blocks may have been lost: the table is unknown from here
                self.hpack[side].forget();
                self.pending[side] = None;
                for st in self.streams.values_mut() {
                    let m = if side == CLIENT { &st.req } else { &st.res };
                    if !m.ended {
                        st.flags.insert("gap");
                    }
                }
                let _ = ts;
            }
        }
    }

    /// The connection ended: every stream still open is emitted, flagged "incomplete"
    /// unless each side ended or had all its content-length (a peer that closes the
    /// connection on the last byte, before the END_STREAM that would have followed).
    pub fn close(&mut self, out: &mut Vec<Stream>) {
        for (_, mut st) in std::mem::take(&mut self.streams) {
            let whole = |m: &Msg| {
                m.ended
                    || (m.seen
                        && m.header("content-length")
                            .and_then(|v| v.parse::<i64>().ok())
                            == Some(m.body_size))
            };
            let complete = whole(&st.req) && whole(&st.res);
            if !(complete || st.flags.contains("gap")) {
                st.flags.insert("incomplete");
            }
            out.push(st);
        }
        self.held = 0;
    }

    fn fail(&mut self, e: FrameError, out: &mut Vec<Stream>) {
        self.failed = true;
        self.count("h2_conns_failed");
        let why = match e {
            FrameError::BadPreface => "h2_bad_preface",
            FrameError::BadPadding => "h2_bad_padding",
            FrameError::BadFrame => "h2_bad_frame",
        };
        for st in self.streams.values_mut() {
            st.flags.insert(why);
        }
        self.close(out);
    }

    fn frame(&mut self, side: usize, fr: Frame, out: &mut Vec<Stream>) -> Result<(), FrameError> {
        if let Some(p) = &self.pending[side] {
            if fr.kind != f::CONTINUATION || fr.stream != p.stream {
                return Err(FrameError::BadFrame);
            }
        }
        match fr.kind {
            f::DATA => self.data(side, &fr, out),
            f::HEADERS => {
                let frag = f::headers_fragment(fr.flags, &fr.payload)?;
                self.start_block(side, &fr, None, frag.to_vec(), out);
                Ok(())
            }
            f::PUSH_PROMISE => {
                let (promised, frag) = f::push_promise(fr.flags, &fr.payload)?;
                self.start_block(side, &fr, Some(promised), frag.to_vec(), out);
                Ok(())
            }
            f::CONTINUATION => {
                let Some(mut p) = self.pending[side].take() else {
                    return Err(FrameError::BadFrame);
                };
                if !p.discard {
                    p.block.extend_from_slice(&fr.payload);
                    if p.block.len() > self.limits.max_block {
                        self.too_large(side, &mut p);
                    }
                }
                if fr.flags & f::END_HEADERS != 0 {
                    self.end_block(side, p, out);
                } else {
                    self.pending[side] = Some(p);
                }
                Ok(())
            }
            f::RST_STREAM => {
                let code = f::be32(&fr.payload, 0).filter(|_| fr.payload.len() == 4);
                let Some(code) = code else {
                    self.count("h2_bad_frames");
                    return Ok(());
                };
                self.count("h2_resets");
                if let Some(mut st) = self.streams.remove(&fr.stream) {
                    self.held = self
                        .held
                        .saturating_sub(st.req.body.len() + st.res.body.len());
                    st.reset = Some(code);
                    st.flags.insert("reset");
                    out.push(st);
                }
                Ok(())
            }
            f::GOAWAY => {
                if fr.payload.len() < 8 {
                    self.count("h2_bad_frames");
                } else {
                    self.count("h2_goaways");
                }
                Ok(())
            }
            f::SETTINGS | f::PING | f::PRIORITY | f::WINDOW_UPDATE => {
                let h = Head {
                    len: fr.payload.len(),
                    kind: fr.kind,
                    flags: fr.flags,
                    stream: fr.stream,
                };
                if !f::plausible(&h, f::MAX_FRAME) {
                    self.count("h2_bad_frames");
                }
                Ok(())
            }
            _ => Ok(()), // extension frames are ignored (RFC 9113 §5.5)
        }
    }

    fn too_large(&mut self, side: usize, p: &mut Pending) {
        p.discard = true;
        p.block = Vec::new();
        self.count("h2_header_blocks_too_large");
        self.hpack[side].forget();
    }

    fn start_block(
        &mut self,
        side: usize,
        fr: &Frame,
        promised: Option<u32>,
        block: Vec<u8>,
        out: &mut Vec<Stream>,
    ) {
        let mut p = Pending {
            stream: fr.stream,
            promised,
            end_stream: promised.is_none() && fr.flags & f::END_STREAM != 0,
            block,
            ts: fr.ts_ns,
            discard: false,
        };
        if p.block.len() > self.limits.max_block {
            self.too_large(side, &mut p);
        }
        if fr.flags & f::END_HEADERS != 0 {
            self.end_block(side, p, out);
        } else {
            self.pending[side] = Some(p);
        }
    }

    /// The stream a header block opens or continues (None: not followed).
    fn stream_for(&mut self, side: usize, id: u32) -> Option<&mut Stream> {
        if !self.streams.contains_key(&id) {
            // a new stream, or one whose start we did not see (joined mid-way)
            let initiator = if id % 2 == 1 { CLIENT } else { SERVER };
            if side == initiator && id <= self.max_id[initiator] {
                self.count("h2_frames_stale");
                return None;
            }
            if self.streams.len() >= self.limits.max_streams {
                self.count("h2_streams_dropped");
                return None;
            }
            self.max_id[initiator] = self.max_id[initiator].max(id);
            self.count("h2_streams");
            self.streams.insert(
                id,
                Stream {
                    id,
                    ..Stream::default()
                },
            );
        }
        self.streams.get_mut(&id)
    }

    fn end_block(&mut self, side: usize, p: Pending, out: &mut Vec<Stream>) {
        let mut flags: Vec<&'static str> = Vec::new();
        let headers = if p.discard {
            flags.push("header_block_too_large");
            Vec::new()
        } else {
            let was_trusted = self.hpack[side].trusted();
            let b = self.hpack[side].decode(&p.block);
            if !was_trusted && self.hpack[side].trusted() {
                self.count("h2_tables_rebuilt");
            }
            if b.unknown {
                self.count("h2_blocks_unknown_entries");
                flags.push("hpack_unknown_entry");
            }
            if b.error {
                self.count("h2_hpack_errors");
                flags.push("hpack_error");
            }
            if b.oversized {
                self.count("h2_header_lists_too_large");
                flags.push("header_list_too_large");
            }
            b.headers
        };
        if let Some(promised) = p.promised {
            // a server push: the promised request, answered on the promised stream
            if side != SERVER {
                return;
            }
            if let Some(st) = self.stream_for(SERVER, promised) {
                st.req = Msg {
                    headers,
                    start_ts_ns: p.ts,
                    end_ts_ns: p.ts,
                    seen: true,
                    ended: true,
                    ..Msg::default()
                };
                st.flags.insert("push");
                st.flags.extend(flags);
            }
            return;
        }
        let Some(st) = self.stream_for(side, p.stream) else {
            return;
        };
        st.flags.extend(flags);
        let m = if side == CLIENT {
            &mut st.req
        } else {
            &mut st.res
        };
        if !m.seen {
            let informational = side == SERVER
                && headers
                    .iter()
                    .any(|(n, v)| n == ":status" && v.starts_with('1'));
            if informational && !p.end_stream {
                return; // 100 Continue, 103 Early Hints: not the response
            }
            m.headers = headers;
            m.seen = true;
            m.start_ts_ns = p.ts;
        } else {
            m.trailers = headers;
        }
        m.end_ts_ns = p.ts;
        if p.end_stream {
            m.ended = true;
        }
        self.maybe_done(p.stream, out);
    }

    fn data(&mut self, side: usize, fr: &Frame, out: &mut Vec<Stream>) -> Result<(), FrameError> {
        let body = f::unpad(fr.flags, &fr.payload)?;
        let max_body = self.limits.max_body;
        let room = self.limits.max_held.saturating_sub(self.held);
        let Some(st) = self.streams.get_mut(&fr.stream) else {
            self.count("h2_frames_stale");
            return Ok(());
        };
        let m = if side == CLIENT {
            &mut st.req
        } else {
            &mut st.res
        };
        if !m.seen {
            m.seen = true;
            m.start_ts_ns = fr.ts_ns;
        }
        m.body_size += body.len() as i64;
        let keep = (max_body.saturating_sub(m.body.len() as u64) as usize)
            .min(body.len())
            .min(room);
        m.body.extend_from_slice(&body[..keep]);
        m.end_ts_ns = fr.ts_ns;
        if keep < body.len() {
            st.flags.insert("truncated");
        }
        self.held += keep;
        if fr.flags & f::END_STREAM != 0 {
            m.ended = true;
            self.maybe_done(fr.stream, out);
        }
        Ok(())
    }

    fn maybe_done(&mut self, id: u32, out: &mut Vec<Stream>) {
        let done = self
            .streams
            .get(&id)
            .is_some_and(|st| st.req.ended && st.res.ended);
        if done {
            if let Some(st) = self.streams.remove(&id) {
                self.held = self
                    .held
                    .saturating_sub(st.req.body.len() + st.res.body.len());
                out.push(st);
            }
        }
    }
}
