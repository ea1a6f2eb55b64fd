//! nodetap-core: nodetap's data plane, ring-buffer records to encoded RRPairs.
//!
//! The Python module `nodetap_core` (built with the `python` feature by maturin):
//!
//! ```text
//! Decoder(max_body: int, id_prefix: str, mono_to_wall_ns: int = 0,
//!         protobuf: bool = True, jsonl: bool = False, hold: bool = False)
//!   .feed_records(buf: bytes, start: int = 0) -> tuple[int, int] | None
//!                                         # ring-buffer-format bytes (8-byte headers):
//!                                         # what RingBufferReader.read_extent returns;
//!                                         # stops at a sendfile record of a tracked
//!                                         # connection: (its payload's start, next start)
//!   .feed_sendfile(conn_id, dir, offset, length, ts_ns, data: bytes | None) -> None
//!                                         # that record's bytes, read back from the file
//!   .set_context(conn_id: int, template: bytes) -> None
//!                                         # an encoded nodetap.v1.RRPair holding direction,
//!                                         # client, server, meta and connection-wide flags;
//!                                         # replaces what the core built from the OPEN record
//!                                         # (hold: releases the exchanges waiting for it)
//!   .set_rules(rules: Rules | None) -> None
//!                                         # the edge rules each RRPair goes through before
//!                                         # it is encoded (drop, sample, redact; HTTP/1,
//!                                         # HTTP/2 and gRPC alike); a reload swaps them
//!   .drop_conn(conn_id: int) -> None      # nothing more of this connection comes out
//!   .waiting_contexts() -> list[int]      # hold: connections whose exchanges wait
//!   .take_control() -> list[bytes]        # hold: OPEN/ADDR/CLOSE record payloads
//!   .take_stopped() -> list[int]          # hold: connections no longer decoded
//!   .take_orphans() -> list[tuple[int, int, int, int]]
//!                                         # hold: (conn_id, tgid, fd, ts) of data of
//!                                         # unknown connections, once each
//!   .close_all(ts_ns: int) -> None        # the capture stops: flush every connection
//!   .take_rrpairs() -> list[bytes]        # encoded nodetap.v1.RRPair, in emission order
//!   .take_jsonl() -> list[bytes]          # their proto3 JSON lines (no newline)
//!   .counters() -> dict[str, int]
//! LAYOUT: dict[str, int]                  # bpf/nodetap.h constants and offsets
//! Rules(config: str, key: bytes)          # the edge rules (src/rules, py_rules.rs): the
//!   .apply(pair: bytes) -> bytes | None   # JSON of agent/rules/config.py to_json()
//!   .evaluate(pair: bytes) -> (action, rule, redactions)
//!   .counters() / .rule_matches() -> dict[str, int]
//! ```
//!
//! A panic inside the core is caught per record (or per connection at the end of a batch):
//! the connection is dropped and counted in `panics`; the caller never sees an exception.
//!
//! Every module but the PyO3 binding (`py`) forbids unsafe code.
#![deny(unsafe_code)]

pub mod build;
pub mod decoder;
pub mod fuzzing;
pub mod h2;
pub mod http1;
pub mod json;
pub mod layout;
pub mod packet;
pub mod pb;
pub mod rules;
pub mod stitch;
pub mod stream;

#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod py_packet;
#[cfg(feature = "python")]
mod py_rules;
