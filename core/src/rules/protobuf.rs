//! Protobuf fields of gRPC messages redacted by path, with the service's descriptors
//! (a FileDescriptorSet, read once through prost-reflect): `redact.protobuf.fields` such as
//! `pkg.Service/Method:request.user.password` or `pkg.Service/*:response.token`.
//!
//! Every message of a matching call (RRPair.grpc, the messages decompressed and unframed) is
//! decoded with the method's input or output type; a named string or bytes field becomes the
//! stable redaction token (as many characters or bytes), a number zero (false, the first enum
//! value), a message or map field empty; repeated fields element by element. The message is
//! encoded again (unknown fields kept), so it still parses with the descriptor. A message that
//! does not decode (cut by --max-body, or not of that type) is replaced whole by its token
//! and the pair flagged `redact-protobuf-undecoded`: nothing named leaves unredacted.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use prost::bytes::Bytes;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};

use crate::pb;
use crate::rules::text::secret_bytes;
use crate::rules::token::token;

pub const UNDECODED_FLAG: &str = "redact-protobuf-undecoded";

/// The fields to redact in one method's requests or responses.
#[derive(Default)]
struct Side {
    desc: Option<MessageDescriptor>,
    paths: Vec<Vec<FieldDescriptor>>,
}

#[derive(Default)]
struct Method {
    request: Side,
    response: Side,
}

pub struct ProtoRedactor {
    /// "pkg.Service/Method" or "pkg.Service/*" -> its fields
    methods: BTreeMap<String, Method>,
}

fn resolve(
    msg: &MessageDescriptor,
    dotted: &str,
    rule: &str,
) -> Result<Vec<FieldDescriptor>, String> {
    let mut out = Vec::new();
    let mut cur = msg.clone();
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, name) in parts.iter().enumerate() {
        let f = cur.get_field_by_name(name).ok_or_else(|| {
            format!(
                "redact.protobuf {rule:?}: {} has no field {name:?}",
                cur.full_name()
            )
        })?;
        if i + 1 < parts.len() {
            match f.kind() {
                Kind::Message(m) if !f.is_map() => cur = m,
                _ => {
                    return Err(format!(
                        "redact.protobuf {rule:?}: {name} is not a message (cannot go into it)"
                    ))
                }
            }
        }
        out.push(f);
    }
    Ok(out)
}

impl ProtoRedactor {
    /// From the FileDescriptorSet (base64) and the field paths; an error in one line.
    pub fn new(descriptors_b64: &str, fields: &[String]) -> Result<Self, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(descriptors_b64)
            .map_err(|e| format!("redact.protobuf.descriptors: not base64: {e}"))?;
        let pool = DescriptorPool::decode(raw.as_slice()).map_err(|e| {
            format!("redact.protobuf.descriptors: not a FileDescriptorSet (protoc --include_imports --descriptor_set_out): {e}")
        })?;
        let mut methods: BTreeMap<String, Method> = BTreeMap::new();
        for rule in fields {
            let bad = || {
                format!(
                    "redact.protobuf {rule:?}: use package.Service/Method:request.field.sub \
                     (or :response..., Method * for every method)"
                )
            };
            let (call, path) = rule.split_once(':').ok_or_else(bad)?;
            let (service, method) = call.rsplit_once('/').ok_or_else(bad)?;
            let (side, dotted) = path.split_once('.').ok_or_else(bad)?;
            if dotted.is_empty() || dotted.split('.').any(str::is_empty) {
                return Err(bad());
            }
            let svc = pool.get_service_by_name(service).ok_or_else(|| {
                format!("redact.protobuf {rule:?}: no service {service:?} in the descriptors")
            })?;
            let mds: Vec<_> = svc
                .methods()
                .filter(|m| method == "*" || m.name() == method)
                .collect();
            if mds.is_empty() {
                return Err(format!(
                    "redact.protobuf {rule:?}: {service} has no method {method:?}"
                ));
            }
            for md in mds {
                let entry = methods
                    .entry(format!("{service}/{}", md.name()))
                    .or_default();
                let (msg, s) = match side {
                    "request" => (md.input(), &mut entry.request),
                    "response" => (md.output(), &mut entry.response),
                    _ => return Err(bad()),
                };
                s.paths.push(resolve(&msg, dotted, rule)?);
                s.desc = Some(msg);
            }
        }
        Ok(Self { methods })
    }

    /// Redact the named fields of a gRPC pair's messages in place; true when anything changed.
    pub fn redact(&self, pair: &mut pb::RrPair, key: &[u8]) -> bool {
        let Some(call) = pair.grpc.as_mut() else {
            return false;
        };
        let Some(m) = self
            .methods
            .get(&format!("{}/{}", call.service, call.method))
        else {
            return false;
        };
        let mut undecoded = false;
        let mut hit = false;
        for (side, msgs) in [
            (&m.request, &mut call.request_messages),
            (&m.response, &mut call.response_messages),
        ] {
            let Some(desc) = side.desc.as_ref() else {
                continue;
            };
            for msg in msgs.iter_mut() {
                match redact_message(desc, &side.paths, msg, key) {
                    Ok(Some(out)) => {
                        *msg = out;
                        hit = true;
                    }
                    Ok(None) => {}
                    Err(()) => {
                        *msg = token(key, msg, msg.len(), false).into_bytes();
                        undecoded = true;
                        hit = true;
                    }
                }
            }
        }
        if undecoded && !pair.flags.iter().any(|f| f == UNDECODED_FLAG) {
            pair.flags.push(UNDECODED_FLAG.into());
        }
        hit
    }
}

/// The message with its fields redacted (None: none of them was set); Err when it does not
/// decode as `desc`.
fn redact_message(
    desc: &MessageDescriptor,
    paths: &[Vec<FieldDescriptor>],
    msg: &[u8],
    key: &[u8],
) -> Result<Option<Vec<u8>>, ()> {
    let mut dm = DynamicMessage::decode(desc.clone(), msg).map_err(|_| ())?;
    let mut hit = false;
    for p in paths {
        hit |= walk(&mut dm, p, key);
    }
    Ok(hit.then(|| prost::Message::encode_to_vec(&dm)))
}

fn walk(m: &mut DynamicMessage, path: &[FieldDescriptor], key: &[u8]) -> bool {
    let f = &path[0];
    if !m.has_field(f) {
        return false;
    }
    let v = m.get_field_mut(f);
    if path.len() == 1 {
        return blank(v, key);
    }
    match v {
        Value::Message(sub) => walk(sub, &path[1..], key),
        Value::List(items) => {
            let mut hit = false;
            for it in items {
                if let Value::Message(sub) = it {
                    hit |= walk(sub, &path[1..], key);
                }
            }
            hit
        }
        _ => false,
    }
}

/// A value replaced by its redacted form; true when it held something.
fn blank(v: &mut Value, key: &[u8]) -> bool {
    match v {
        Value::String(s) => {
            *s = token(key, &secret_bytes(s), s.chars().count(), false);
        }
        Value::Bytes(b) => {
            *v = Value::Bytes(Bytes::from(token(key, b, b.len(), false).into_bytes()));
        }
        Value::Bool(x) => *x = false,
        Value::I32(x) => *x = 0,
        Value::I64(x) => *x = 0,
        Value::U32(x) => *x = 0,
        Value::U64(x) => *x = 0,
        Value::F32(x) => *x = 0.0,
        Value::F64(x) => *x = 0.0,
        Value::EnumNumber(x) => *x = 0,
        Value::Message(m) => prost::Message::clear(m),
        Value::List(items) => {
            for it in items.iter_mut() {
                blank(it, key);
            }
        }
        Value::Map(map) => map.clear(),
    }
    true
}
