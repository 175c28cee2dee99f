//! Where a record goes: Java's murmur2 for keyed records, so a key lands on the same
//! partition as with the Java client and librdkafka's `murmur2_random`; round-robin
//! stickiness for records without a key.

/// Kafka's `Utils.murmur2`: MurmurHash2, seed 0x9747b28c, as Java computes it on i32.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which differs at i32::MIN).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition of a keyed record among `partitions` partitions (all of them, available
/// or not, exactly as Java's default partitioner and librdkafka's murmur2_random do).
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (to_positive(murmur2(key)) as u32 % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own `UtilsTest.testMurmur2` pins for the Java implementation.
    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keys_land_where_java_puts_them() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 6 = 0, % 7 = 3.
        assert_eq!(partition_for_key(b"21", 6), 0);
        assert_eq!(partition_for_key(b"21", 7), 3);
        // toPositive(479470107) = 479470107 (already positive); % 4 = 3, % 5 = 2.
        assert_eq!(partition_for_key(b"abc", 4), 3);
        assert_eq!(partition_for_key(b"abc", 5), 2);
        // -58897971 & 0x7fffffff = 2088585677; % 3 = 2.
        assert_eq!(
            partition_for_key(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 3),
            2
        );
        assert_eq!(
            to_positive(i32::MIN),
            0,
            "not abs: Java maps MIN_VALUE to 0"
        );
        assert_eq!(partition_for_key(b"", 1), 0);
        for n in 1..20 {
            let p = partition_for_key(b"some-key", n);
            assert!((0..n as i32).contains(&p));
        }
    }
}
