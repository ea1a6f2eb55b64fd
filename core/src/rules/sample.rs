//! Deterministic sampling (agent/rules/match.py `sampled_in`): BLAKE2b with an 8-byte
//! digest of "rule\0id", big-endian, below rate * 2^64.
#![forbid(unsafe_code)]

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

pub fn sampled_in(rule: &str, pair_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false; // (the rules' validation refuses a NaN rate)
    }
    let mut h = Blake2bVar::new(8).expect("8 is a valid BLAKE2b digest size");
    h.update(rule.as_bytes());
    h.update(b"\0");
    h.update(pair_id.as_bytes());
    let mut out = [0u8; 8];
    h.finalize_variable(&mut out)
        .expect("the buffer has the digest's size");
    // int(rate * 2**64) of Python: the product is exact (a power of two), int() truncates
    let limit = (rate * 18_446_744_073_709_551_616.0) as u128;
    u128::from(u64::from_be_bytes(out)) < limit
}

#[cfg(test)]
mod tests {
    use super::sampled_in;

    #[test]
    fn bounds_and_determinism() {
        assert!(sampled_in("r", "x", 1.0));
        assert!(!sampled_in("r", "x", 0.0));
        let kept = (0..1000)
            .filter(|i| sampled_in("web", &format!("w-{i}"), 0.25))
            .count();
        assert!((150..350).contains(&kept));
    }
}
