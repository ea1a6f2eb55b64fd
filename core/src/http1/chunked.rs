//! Chunked transfer coding: the chunk-size line and its extensions.

use std::sync::OnceLock;

use super::Invalid;

/// The size on a chunk-size line (with optional extensions).
pub(super) fn chunk_size(line: &[u8]) -> Result<u64, Invalid> {
    let (size, ext) = match memchr::memchr(b';', line) {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(Invalid);
    }
    if let Some(ext) = ext {
        if ext.is_empty() || ext.ends_with(b";") || !chunk_ext_ok(ext) {
            return Err(Invalid);
        }
    }
    let mut v = 0u64;
    for &c in size {
        v = v << 4 | u64::from((c as char).to_digit(16).unwrap_or(0));
    }
    Ok(v)
}

/// syntax.py CHUNK_EXT: ";"-separated `name[=value]` items, token characters, a value may
/// end in one quoted string.
pub(super) fn chunk_ext_ok(ext: &[u8]) -> bool {
    static EXT: OnceLock<regex::bytes::Regex> = OnceLock::new();
    let re = EXT.get_or_init(|| {
        let token = r#"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"#;
        let quoted = r#""(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*""#;
        let item = format!("(?:{token})?(?:=(?:{token})?(?:{quoted})?)?");
        regex::bytes::Regex::new(&format!("(?-u)^(?:{item};)*{item}$")).expect("CHUNK_EXT")
    });
    re.is_match(ext)
}
