//! A fast hasher for keys no client chooses: addresses of shared values, backend authorities from the routes.
//! One rotate, xor and multiply per 8 bytes, where std's SipHash, built to resist keys chosen to collide,
//! costs a few hundred instructions per key. Never for a key taken from a request (a `Host`, a path).

use std::hash::{BuildHasherDefault, Hasher};

/// An odd multiplier whose bits are well spread (the golden ratio's).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug, Default, Clone, Copy)]
pub struct Fast(u64);

/// For `HashMap::with_hasher` / `HashMap::default`.
pub type FastBuild = BuildHasherDefault<Fast>;

impl Fast {
    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for Fast {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(w.try_into().map_or(0, u64::from_le_bytes));
        }
        let mut last = [0u8; 8];
        let rest = words.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(last));
    }

    fn write_u8(&mut self, n: u8) {
        self.word(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.word(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }

    /// The multiply leaves the low bits weakest; the table indexes by them.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn nearby_keys_spread_over_the_low_bits() {
        let build = FastBuild::default();
        let buckets: HashSet<u64> =
            (0..4096u64).map(|i| build.hash_one(format!("10.0.{}.{}:8080", i / 256, i % 256)) & 4095).collect();
        // A uniform hash fills about 63 % of 4 096 buckets with 4 096 keys.
        assert!(buckets.len() > 2400, "{} buckets", buckets.len());
        let pointers: HashSet<u64> = (0..4096usize).map(|i| build.hash_one(0x7f00_0000_1000 + i * 64) & 4095).collect();
        assert!(pointers.len() > 2400, "{} buckets", pointers.len());
    }
}
