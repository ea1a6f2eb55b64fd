//! The rules as Python validated them (agent/rules/config.py `to_json`): the JSON model.
//! YAML parsing and its limits stay in Python; this reads the result once.
#![forbid(unsafe_code)]

use serde_json::Value;

#[derive(Debug, Default, Clone)]
pub struct Match {
    pub host: Vec<String>,
    pub port: Vec<u32>,
    pub path: Option<String>,
    pub method: Vec<String>,
    pub namespace: Vec<String>,
    pub pod: Vec<String>,
    pub workload: Vec<String>,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub matcher: Match,
    pub rate: f64,
}

#[derive(Debug, Default, Clone)]
pub struct Redact {
    pub headers: Vec<String>,
    pub json_fields: Vec<String>,
    pub patterns: Vec<String>,
    pub custom: Vec<(String, String)>,
    pub hash_key: Option<String>,
    /// a FileDescriptorSet in base64 and the gRPC message fields to redact (protobuf.rs)
    pub protobuf_descriptors: Option<String>,
    pub protobuf_fields: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    pub builtin: Vec<String>,
    pub drop: Vec<Rule>,
    pub sample: Vec<Rule>,
    pub redact: Redact,
}

type R<T> = Result<T, String>;

fn field<'a>(v: &'a Value, key: &str, what: &str) -> R<&'a Value> {
    v.get(key)
        .ok_or_else(|| format!("rules JSON: {what} has no {key:?}"))
}

fn strings(v: Option<&Value>, what: &str) -> R<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("rules JSON: {what} must hold strings"))
            })
            .collect(),
        Some(_) => Err(format!("rules JSON: {what} must be a list")),
    }
}

fn matcher(v: &Value, what: &str) -> R<Match> {
    let m = field(v, "match", what)?;
    let ports = match m.get("port") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| {
                p.as_u64()
                    .filter(|p| (1..65536).contains(p))
                    .map(|p| p as u32)
                    .ok_or_else(|| format!("rules JSON: {what}.port must hold port numbers"))
            })
            .collect::<R<_>>()?,
        Some(_) => return Err(format!("rules JSON: {what}.port must be a list")),
    };
    let labels = match m.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, g)| {
                g.as_str()
                    .map(|g| (k.clone(), g.to_string()))
                    .ok_or_else(|| format!("rules JSON: {what}.labels must map to strings"))
            })
            .collect::<R<_>>()?,
        Some(_) => return Err(format!("rules JSON: {what}.labels must be a mapping")),
    };
    let path = match m.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(format!("rules JSON: {what}.path must be a string")),
    };
    Ok(Match {
        host: strings(m.get("host"), what)?,
        port: ports,
        path,
        method: strings(m.get("method"), what)?,
        namespace: strings(m.get("namespace"), what)?,
        pod: strings(m.get("pod"), what)?,
        workload: strings(m.get("workload"), what)?,
        labels,
    })
}

fn rules(v: Option<&Value>, action: &str) -> R<Vec<Rule>> {
    let Some(list) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("rules JSON: {action} must be a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let what = format!("{action}[{i}]");
            let name = field(r, "name", &what)?
                .as_str()
                .ok_or_else(|| format!("rules JSON: {what}.name must be a string"))?;
            let rate = match r.get("rate") {
                None | Some(Value::Null) => 1.0,
                Some(x) => x
                    .as_f64()
                    .filter(|x| (0.0..=1.0).contains(x))
                    .ok_or_else(|| format!("rules JSON: {what}.rate must be in [0, 1]"))?,
            };
            Ok(Rule {
                name: name.to_string(),
                matcher: matcher(r, &what)?,
                rate,
            })
        })
        .collect()
}

pub fn parse(json: &str) -> R<RuleSet> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format!("rules JSON: not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("rules JSON: must be an object".into());
    }
    let mut rs = RuleSet {
        builtin: strings(v.get("builtin"), "builtin")?,
        drop: rules(v.get("drop"), "drop")?,
        sample: rules(v.get("sample"), "sample")?,
        redact: Redact::default(),
    };
    if let Some(r) = v.get("redact").filter(|r| !r.is_null()) {
        let custom = match r.get("custom") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|c| {
                    match (
                        c.get("name").and_then(Value::as_str),
                        c.get("regex").and_then(Value::as_str),
                    ) {
                        (Some(n), Some(x)) => Ok((n.to_string(), x.to_string())),
                        _ => Err("rules JSON: redact.custom needs name and regex".to_string()),
                    }
                })
                .collect::<R<_>>()?,
            Some(_) => return Err("rules JSON: redact.custom must be a list".into()),
        };
        rs.redact = Redact {
            headers: strings(r.get("headers"), "redact.headers")?,
            json_fields: strings(r.get("json_fields"), "redact.json_fields")?,
            patterns: strings(r.get("patterns"), "redact.patterns")?,
            custom,
            hash_key: r
                .get("hash_key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
            protobuf_descriptors: r
                .get("protobuf_descriptors")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            protobuf_fields: strings(r.get("protobuf_fields"), "redact.protobuf_fields")?,
        };
        if !rs.redact.protobuf_fields.is_empty() && rs.redact.protobuf_descriptors.is_none() {
            return Err("rules JSON: redact.protobuf_fields needs protobuf_descriptors".into());
        }
    }
    Ok(rs)
}
