//! BLAKE2b-256, the one hash Hangar uses for content addresses, partition
//! keys and Merkle trees.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use serde::{Deserialize, Serialize};

/// A BLAKE2b-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(data: &[u8]) -> Hash {
        let mut h = Blake2b::<U32>::new();
        h.update(data);
        Hash(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", hex::encode(&self.0[..8]))
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The partition (0..256) a partition key falls in: the first byte of its
/// hash.
pub fn partition_of(partition_key: &[u8]) -> usize {
    Hash::of(partition_key).0[0] as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake2b_256_matches_a_known_vector() {
        // BLAKE2b-256("abc"), from the reference implementation.
        assert_eq!(
            Hash::of(b"abc").to_string(),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }
}
