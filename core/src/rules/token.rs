//! Redaction tokens: `length` characters of HMAC-SHA256(key, secret) in hex (or digits for
//! JSON numbers), as agent/rules/redact.py `Redactor.token` makes them.
#![forbid(unsafe_code)]

use hmac::{Hmac, Mac};
use sha2::Sha256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The token of `secret`: its HMAC in hex repeated to `length` characters; with `digits`,
/// each hex digit becomes its value modulo 10.
pub fn token(key: &[u8], secret: &[u8], length: usize, digits: bool) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(secret);
    let sum = mac.finalize().into_bytes();
    let mut hex = [0u8; 64];
    for (i, b) in sum.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    (0..length)
        .map(|i| {
            let c = hex[i % 64];
            if digits {
                let v = if c.is_ascii_digit() {
                    c - b'0'
                } else {
                    c - b'a' + 10
                };
                char::from(b'0' + v % 10)
            } else {
                char::from(c)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn hmac_hex_repeated() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"k",b"s",hashlib.sha256).hexdigest())'
        let t = token(b"k", b"s", 70, false);
        assert_eq!(t.len(), 70);
        assert_eq!(&t[64..], &t[..6]);
        assert!(token(b"k", b"s", 5, true)
            .bytes()
            .all(|c| c.is_ascii_digit()));
    }
}
