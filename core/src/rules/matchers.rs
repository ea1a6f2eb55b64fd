//! Drop and sample conditions as predicates over an RRPair (agent/rules/match.py): globs on
//! the Host header and the pod's metadata, ports, a path regex, methods, the built-in health
//! checks and metrics scrapes.
#![forbid(unsafe_code)]

use std::collections::HashSet;

use crate::pb;
use crate::rules::config::Match;
use crate::rules::glob::Glob;
use crate::rules::re2syntax;
use crate::rules::text::{lower_eq, py_lower, py_upper};

/// The value of the first header called `lname` (lower case), as Python's `header()`.
pub fn header<'a>(headers: &'a [pb::Header], lname: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| lower_eq(&h.name, lname))
        .map(|h| h.value.as_str())
}

fn req(p: &pb::RrPair) -> Option<&pb::HttpRequest> {
    p.http.as_ref().and_then(|h| h.req.as_ref())
}

/// The URL's path without scheme, authority and query.
pub fn path_of(p: &pb::RrPair) -> String {
    let url = req(p).map_or("", |r| r.url.as_str());
    let url: String = match url.split_once("://") {
        Some((_, rest)) => match rest.split_once('/') {
            Some((_, path)) => format!("/{path}"),
            None => "/".into(),
        },
        None => url.to_string(),
    };
    match url.split_once('?') {
        Some((path, _)) => path.to_string(),
        None => url,
    }
}

/// The Host header without its port, lower case; the server's address without one.
pub fn host_of(p: &pb::RrPair) -> String {
    let host = req(p)
        .and_then(|r| header(&r.headers, "host"))
        .unwrap_or("");
    if host.is_empty() {
        return p.server.as_ref().map_or(String::new(), |s| s.ip.clone());
    }
    if let Some(rest) = host.strip_prefix('[') {
        let inner = rest.split_once(']').map_or(rest, |(a, _)| a);
        return py_lower(inner).into_owned();
    }
    if host.matches(':').count() == 1 {
        let (name, _) = host.rsplit_once(':').unwrap_or((host, ""));
        return py_lower(name).into_owned();
    }
    py_lower(host).into_owned()
}

fn any(globs: &[Glob], value: &str) -> bool {
    globs.iter().any(|g| g.matches_str(value))
}

pub enum Predicate {
    Match {
        host: Vec<Glob>,
        port: HashSet<u32>,
        path: Option<regex::Regex>,
        method: HashSet<String>,
        namespace: Vec<Glob>,
        pod: Vec<Glob>,
        workload: Vec<Glob>,
        labels: Vec<(String, Glob)>,
    },
    Builtin {
        path: regex::Regex,
        agents: &'static [&'static str],
    },
}

const BUILTINS: &[(&str, &str, &[&str])] = &[
    (
        "health-checks",
        r"(?i)^/(healthz|livez|readyz|health|healthcheck|ready|live|ping)/?$",
        &["kube-probe/", "ELB-HealthChecker/", "GoogleHC/"],
    ),
    (
        "metrics-scrapes",
        r"^/(metrics|federate)/?$",
        &["Prometheus/"],
    ),
];

impl Predicate {
    pub fn compile(m: &Match) -> Result<Self, String> {
        let globs = |v: &[String]| v.iter().map(|g| Glob::new(g)).collect::<Vec<_>>();
        Ok(Predicate::Match {
            host: m.host.iter().map(|g| Glob::new(&py_lower(g))).collect(),
            port: m.port.iter().copied().collect(),
            path: match &m.path {
                Some(rx) => {
                    Some(re2syntax::compile_str(rx).map_err(|e| format!("path {rx:?}: {e}"))?)
                }
                None => None,
            },
            method: m.method.iter().map(|x| py_upper(x).into_owned()).collect(),
            namespace: globs(&m.namespace),
            pod: globs(&m.pod),
            workload: globs(&m.workload),
            labels: m
                .labels
                .iter()
                .map(|(k, g)| (k.clone(), Glob::new(g)))
                .collect(),
        })
    }

    pub fn builtin(name: &str) -> Result<Self, String> {
        let &(_, rx, agents) = BUILTINS
            .iter()
            .find(|b| b.0 == name)
            .ok_or_else(|| format!("unknown built-in rule set {name:?}"))?;
        Ok(Predicate::Builtin {
            path: re2syntax::compile_str(rx)?,
            agents,
        })
    }

    pub fn holds(&self, p: &pb::RrPair) -> bool {
        match self {
            Predicate::Builtin { path, agents } => {
                if p.http.is_none() {
                    return false;
                }
                if path.is_match(&path_of(p)) {
                    return true;
                }
                let ua = req(p).and_then(|r| header(&r.headers, "user-agent"));
                let ua = ua.unwrap_or("");
                agents.iter().any(|a| ua.starts_with(a))
            }
            Predicate::Match {
                host,
                port,
                path,
                method,
                namespace,
                pod,
                workload,
                labels,
            } => {
                let none = pb::Meta::default();
                let meta = p.meta.as_ref().unwrap_or(&none);
                (host.is_empty() || any(host, &py_lower(&host_of(p))))
                    && (port.is_empty() || port.contains(&p.server.as_ref().map_or(0, |s| s.port)))
                    && path.as_ref().is_none_or(|rx| rx.is_match(&path_of(p)))
                    && (method.is_empty()
                        || method.contains(&*py_upper(req(p).map_or("", |r| r.method.as_str()))))
                    && (namespace.is_empty() || any(namespace, &meta.namespace))
                    && (pod.is_empty() || any(pod, &meta.pod))
                    && (workload.is_empty() || any(workload, &meta.workload))
                    && labels
                        .iter()
                        .all(|(k, g)| meta.labels.get(k).is_some_and(|v| g.matches_str(v)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(url: &str, host: &str) -> pb::RrPair {
        pb::RrPair {
            server: Some(pb::Endpoint {
                ip: "10.0.0.1".into(),
                port: 8080,
            }),
            http: Some(pb::HttpExchange {
                req: Some(pb::HttpRequest {
                    url: url.into(),
                    headers: vec![pb::Header {
                        name: "HOST".into(),
                        value: host.into(),
                    }],
                    ..Default::default()
                }),
                res: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn paths_hosts_builtins() {
        assert_eq!(path_of(&pair("http://h:1/a/b?q", "")), "/a/b");
        assert_eq!(path_of(&pair("http://h", "")), "/");
        assert_eq!(host_of(&pair("/", "Admin.X:80")), "admin.x");
        assert_eq!(host_of(&pair("/", "[::1]:80")), "::1");
        assert_eq!(host_of(&pair("/", "")), "10.0.0.1");
        let h = Predicate::builtin("health-checks").unwrap();
        assert!(h.holds(&pair("/HEALTHZ/", "")));
        assert!(!h.holds(&pair("/api/healthz", "")));
    }
}
