//! Protobuf fields redacted by path (protobuf.rs), with a descriptor set built here.
use base64::Engine as _;
use prost::Message as _;
use prost_reflect::prost_types::{
    field_descriptor_proto::{Label, Type},
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

use crate::pb;
use crate::rules::{Rules, Verdict};

fn field(
    name: &str,
    n: i32,
    ty: Type,
    label: Label,
    type_name: Option<&str>,
) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(n),
        r#type: Some(ty as i32),
        label: Some(label as i32),
        type_name: type_name.map(str::to_string),
        ..Default::default()
    }
}

fn descriptors() -> Vec<u8> {
    let opt = Label::Optional;
    let msg = |name: &str, fields: Vec<FieldDescriptorProto>| DescriptorProto {
        name: Some(name.into()),
        field: fields,
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("t.proto".into()),
        package: Some("t".into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            msg(
                "Card",
                vec![
                    field("number", 1, Type::String, opt, None),
                    field("cvv", 2, Type::Int32, opt, None),
                ],
            ),
            msg(
                "Pay",
                vec![
                    field("user", 1, Type::String, opt, None),
                    field("secret", 2, Type::Bytes, opt, None),
                    field("cards", 3, Type::Message, Label::Repeated, Some(".t.Card")),
                    field("amount", 4, Type::Int64, opt, None),
                ],
            ),
        ],
        service: vec![ServiceDescriptorProto {
            name: Some("Bank".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Pay".into()),
                input_type: Some(".t.Pay".into()),
                output_type: Some(".t.Pay".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

fn rules(fields: &[&str]) -> Result<Rules, String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(descriptors());
    let json = serde_json::json!({"builtin": [], "drop": [], "sample": [],
        "redact": {"headers": [], "json_fields": [], "patterns": [], "custom": [],
                   "hash_key": null, "protobuf_descriptors": b64, "protobuf_fields": fields}});
    Rules::from_json(&json.to_string(), b"k")
}

fn pay_message() -> (DynamicMessage, Vec<u8>) {
    let pool = DescriptorPool::decode(descriptors().as_slice()).unwrap();
    let desc = pool.get_message_by_name("t.Pay").unwrap();
    let card = pool.get_message_by_name("t.Card").unwrap();
    let mut c = DynamicMessage::new(card);
    c.set_field_by_name("number", Value::String("4111111111111111".into()));
    c.set_field_by_name("cvv", Value::I32(123));
    let mut m = DynamicMessage::new(desc);
    m.set_field_by_name("user", Value::String("ann".into()));
    m.set_field_by_name("secret", Value::Bytes(vec![1u8, 2, 3].into()));
    m.set_field_by_name("cards", Value::List(vec![Value::Message(c)]));
    m.set_field_by_name("amount", Value::I64(42));
    let bytes = m.encode_to_vec();
    (m, bytes)
}

fn grpc_pair(msgs: Vec<Vec<u8>>) -> pb::RrPair {
    pb::RrPair {
        id: "g-1".into(),
        l7protocol: "grpc".into(),
        grpc: Some(pb::GrpcCall {
            service: "t.Bank".into(),
            method: "Pay".into(),
            request_messages: msgs.clone(),
            response_messages: msgs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn named_fields_redacted_and_messages_still_parse() {
    let r = rules(&[
        "t.Bank/Pay:request.secret",
        "t.Bank/*:request.cards.number",
        "t.Bank/Pay:request.cards.cvv",
    ])
    .unwrap();
    let (orig, bytes) = pay_message();
    let mut p = grpc_pair(vec![bytes.clone()]);
    assert_eq!(r.apply(&mut p), Verdict::Keep);
    let g = p.grpc.as_ref().unwrap();
    assert_eq!(
        g.response_messages,
        vec![bytes],
        "only the request side was named"
    );
    let got = DynamicMessage::decode(orig.descriptor(), g.request_messages[0].as_slice()).unwrap();
    assert_eq!(got.get_field_by_name("user").unwrap().as_str(), Some("ann"));
    assert_eq!(got.get_field_by_name("amount").unwrap().as_i64(), Some(42));
    let secret = got
        .get_field_by_name("secret")
        .unwrap()
        .as_bytes()
        .unwrap()
        .clone();
    assert_eq!(secret.len(), 3);
    assert_ne!(secret.as_ref(), &[1u8, 2, 3]);
    let cards = got.get_field_by_name("cards").unwrap();
    let card = cards.as_list().unwrap()[0].as_message().unwrap().clone();
    let number = card
        .get_field_by_name("number")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(number.len(), 16);
    assert_ne!(number, "4111111111111111");
    assert_eq!(card.get_field_by_name("cvv").unwrap().as_i32(), Some(0));
    assert!(p.flags.iter().any(|f| f == "redacted"));
    // the same secret gives the same token (stable across pairs)
    let mut q = grpc_pair(vec![pay_message().1]);
    r.apply(&mut q);
    assert_eq!(q.grpc.unwrap().request_messages, g.request_messages);
}

#[test]
fn undecodable_message_is_replaced_whole_and_flagged() {
    let r = rules(&["t.Bank/Pay:response.user"]).unwrap();
    let (_, bytes) = pay_message();
    let cut = bytes[..bytes.len() - 3].to_vec();
    let mut p = grpc_pair(vec![cut.clone()]);
    r.apply(&mut p);
    let g = p.grpc.as_ref().unwrap();
    assert_eq!(g.request_messages, vec![cut.clone()]);
    assert_eq!(g.response_messages[0].len(), cut.len());
    assert_ne!(g.response_messages[0], cut);
    assert!(p.flags.iter().any(|f| f == super::protobuf::UNDECODED_FLAG));
}

#[test]
fn other_calls_untouched_and_bad_rules_refused() {
    let r = rules(&["t.Bank/Pay:request.user"]).unwrap();
    let (_, bytes) = pay_message();
    let mut p = grpc_pair(vec![bytes.clone()]);
    p.grpc.as_mut().unwrap().method = "Other".into();
    r.apply(&mut p);
    assert_eq!(p.grpc.unwrap().request_messages, vec![bytes]);
    for (bad, why) in [
        ("t.Bank/Pay:request.nope", "has no field"),
        ("t.Bank/Pay:request.user.x", "not a message"),
        ("t.Nope/Pay:request.user", "no service"),
        ("t.Bank/Nope:request.user", "no method"),
        ("t.Bank/Pay:body.user", "use package.Service/Method"),
        ("t.Bank/Pay", "use package.Service/Method"),
    ] {
        let e = rules(&[bad]).err().unwrap();
        assert!(e.contains(why), "{bad}: {e}");
    }
}
