//! nodetap.v1.RRPair (proto/nodetap/v1/rrpair.proto) as prost messages, written by hand
//! (no protoc at build time). tests/core/test_pb_roundtrip.py checks that they round-trip
//! with the Python stubs; a field added to the proto must be added here too.
#![forbid(unsafe_code)]
#![allow(clippy::derive_partial_eq_without_eq)]

use std::collections::BTreeMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Endpoint {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(uint32, tag = "2")]
    pub port: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Meta {
    #[prost(string, tag = "1")]
    pub node: String,
    #[prost(uint32, tag = "2")]
    pub pid: u32,
    #[prost(string, tag = "3")]
    pub comm: String,
    #[prost(string, tag = "4")]
    pub container_id: String,
    #[prost(string, tag = "5")]
    pub namespace: String,
    #[prost(string, tag = "6")]
    pub pod: String,
    #[prost(btree_map = "string, string", tag = "7")]
    pub labels: BTreeMap<String, String>,
    #[prost(string, tag = "8")]
    pub source: String,
    #[prost(uint64, tag = "9")]
    pub conn_id: u64,
    #[prost(string, tag = "10")]
    pub agent_version: String,
    #[prost(string, tag = "11")]
    pub cluster: String,
    #[prost(string, tag = "12")]
    pub container: String,
    #[prost(string, tag = "13")]
    pub workload: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    #[prost(string, tag = "1")]
    pub method: String,
    #[prost(string, tag = "2")]
    pub url: String,
    #[prost(string, tag = "3")]
    pub version: String,
    #[prost(message, repeated, tag = "4")]
    pub headers: Vec<Header>,
    #[prost(bytes = "vec", tag = "5")]
    pub body: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub body_size: i64,
    #[prost(message, repeated, tag = "7")]
    pub trailers: Vec<Header>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpResponse {
    #[prost(int32, tag = "1")]
    pub status_code: i32,
    #[prost(string, tag = "2")]
    pub status_message: String,
    #[prost(string, tag = "3")]
    pub version: String,
    #[prost(message, repeated, tag = "4")]
    pub headers: Vec<Header>,
    #[prost(bytes = "vec", tag = "5")]
    pub body: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub body_size: i64,
    #[prost(message, repeated, tag = "7")]
    pub trailers: Vec<Header>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpExchange {
    #[prost(message, optional, tag = "1")]
    pub req: Option<HttpRequest>,
    #[prost(message, optional, tag = "2")]
    pub res: Option<HttpResponse>,
}

/// A gRPC call (l7protocol "grpc"): its messages, decompressed, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrpcCall {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(string, tag = "4")]
    pub status_message: String,
    #[prost(string, tag = "5")]
    pub encoding: String,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub request_messages: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub response_messages: Vec<Vec<u8>>,
}

/// Direction enum values.
pub const INBOUND: i32 = 1;
pub const OUTBOUND: i32 = 2;
pub const NETWORK: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
pub struct RrPair {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub ts: Option<Timestamp>,
    #[prost(int64, tag = "3")]
    pub duration_us: i64,
    #[prost(string, tag = "4")]
    pub l7protocol: String,
    #[prost(int32, tag = "5")]
    pub direction: i32,
    #[prost(message, optional, tag = "6")]
    pub client: Option<Endpoint>,
    #[prost(message, optional, tag = "7")]
    pub server: Option<Endpoint>,
    #[prost(message, optional, tag = "8")]
    pub meta: Option<Meta>,
    #[prost(string, repeated, tag = "9")]
    pub flags: Vec<String>,
    #[prost(int64, tag = "10")]
    pub ttfb_us: i64,
    #[prost(message, optional, tag = "20")]
    pub http: Option<HttpExchange>,
    #[prost(message, optional, tag = "21")]
    pub grpc: Option<GrpcCall>,
}
