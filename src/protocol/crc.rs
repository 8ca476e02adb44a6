//! CRC-32C of frame payloads, at the speed the event loop needs.
//!
//! The `crc32c` crate computes it with the `crc32` instruction, three streams at a time. On a
//! CPU with VPCLMULQDQ and AVX2, folding 128 bytes per step with carry-less multiplication
//! is faster (1.4 to 1.6 times on 20 KB payloads on the benchmark machine, see
//! docs/BENCHMARKS.md); the event loop checks every native payload, and at 1000 devices the
//! check was the largest cost native frames have that legacy frames do not. Everything else
//! (short inputs, other CPUs, compilers before Rust 1.89: see build.rs) goes to the crate,
//! which is also the reference the tests compare against.
//!
//! The folding follows Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
//! Instruction" for a bit-reflected CRC: the running 1024-bit remainder is multiplied forward
//! by `x^n mod P` constants and the next data XORed in; at the end, 128 bits are left, and the
//! `crc32` instruction reduces them and any tail bytes.

/// Inputs shorter than this go to the `crc32c` crate: the folding's set-up does not pay off,
/// and it needs 128 bytes to start.
const FOLD_MIN: usize = 256;

/// CRC-32C (Castagnoli) of `data`, the same value as `crc32c::crc32c`.
pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(all(target_arch = "x86_64", framegate_vpclmulqdq))]
    if data.len() >= FOLD_MIN && fold::available() {
        // SAFETY: `available` checked that the CPU has every feature `fold::crc32c` enables.
        return unsafe { fold::crc32c(data) };
    }
    crc32c::crc32c(data)
}

// Built only by a compiler that has the 256-bit intrinsics (build.rs).
#[cfg(all(target_arch = "x86_64", framegate_vpclmulqdq))]
#[clippy::msrv = "1.89"]
mod fold {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    // `x^n mod P` for P = 0x1_1EDC6F41, bit-reflected and shifted left by one, as the
    // reflected carry-less multiplications want them; n is the fold distance in bits +/- 32.
    // (Checked by `constants_are_x_to_the_n_mod_p` in the tests.)
    /// Fold by 1024 bits (eight 128-bit lanes, four 256-bit registers).
    pub(super) const K_1024_PLUS: i64 = 0x6992_cea2; // x^(1024+32)
    pub(super) const K_1024_MINUS: i64 = 0x0d3b_6092; // x^(1024-32)
    /// Fold by 256 bits (one register into the next).
    pub(super) const K_256_PLUS: i64 = 0x1_384a_a63a; // x^(256+32)
    pub(super) const K_256_MINUS: i64 = 0xba4f_c28e; // x^(256-32)
    /// Fold by 128 bits (one lane into the next).
    pub(super) const K_128_PLUS: i64 = 0xf20c_0dfe; // x^(128+32)
    pub(super) const K_128_MINUS: i64 = 0x1_4cd0_0bd6; // x^(128-32)

    /// True if this CPU can run [`crc32c`]; detected once.
    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("vpclmulqdq")
                && is_x86_feature_detected!("pclmulqdq")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("sse4.2")
        })
    }

    /// Multiplies each 128-bit lane of `x` forward by the distance `k` was made for.
    #[inline]
    #[target_feature(enable = "avx2,vpclmulqdq")]
    fn fold_256(x: __m256i, k: __m256i) -> __m256i {
        _mm256_xor_si256(
            _mm256_clmulepi64_epi128::<0x00>(x, k),
            _mm256_clmulepi64_epi128::<0x11>(x, k),
        )
    }

    /// The same for one 128-bit lane.
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    fn fold_128(x: __m128i, k: __m128i) -> __m128i {
        _mm_xor_si128(
            _mm_clmulepi64_si128::<0x00>(x, k),
            _mm_clmulepi64_si128::<0x11>(x, k),
        )
    }

    /// The 32 bytes of `block`, unaligned.
    #[inline]
    #[target_feature(enable = "avx")]
    fn load_256(block: &[u8]) -> __m256i {
        let block: &[u8; 32] = block.try_into().expect("32 bytes");
        // SAFETY: `block` is 32 readable bytes, and the load does not need alignment.
        unsafe { _mm256_loadu_si256(block.as_ptr().cast()) }
    }

    /// CRC-32C of `data` (at least 128 bytes) by folding.
    ///
    /// # Safety
    /// The CPU must support AVX2, VPCLMULQDQ, PCLMULQDQ and SSE 4.2 ([`available`]).
    #[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
    pub unsafe fn crc32c(data: &[u8]) -> u32 {
        assert!(data.len() >= 128, "folding needs 128 bytes to start");
        let load = |at: usize| load_256(&data[at..at + 32]);
        // The initial value ~0 goes into the first four bytes (CRC-32C's pre-inversion).
        let mut y0 = _mm256_xor_si256(load(0), _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, -1));
        let mut y1 = load(32);
        let mut y2 = load(64);
        let mut y3 = load(96);
        let k1024 = _mm256_set_epi64x(K_1024_MINUS, K_1024_PLUS, K_1024_MINUS, K_1024_PLUS);
        let mut at = 128;
        while at + 128 <= data.len() {
            y0 = _mm256_xor_si256(fold_256(y0, k1024), load(at));
            y1 = _mm256_xor_si256(fold_256(y1, k1024), load(at + 32));
            y2 = _mm256_xor_si256(fold_256(y2, k1024), load(at + 64));
            y3 = _mm256_xor_si256(fold_256(y3, k1024), load(at + 96));
            at += 128;
        }
        let k256 = _mm256_set_epi64x(K_256_MINUS, K_256_PLUS, K_256_MINUS, K_256_PLUS);
        y1 = _mm256_xor_si256(fold_256(y0, k256), y1);
        y2 = _mm256_xor_si256(fold_256(y1, k256), y2);
        y3 = _mm256_xor_si256(fold_256(y2, k256), y3);
        let k128 = _mm_set_epi64x(K_128_MINUS, K_128_PLUS);
        let mut x = _mm_xor_si128(
            fold_128(_mm256_castsi256_si128(y3), k128),
            _mm256_extracti128_si256::<1>(y3),
        );
        while at + 16 <= data.len() {
            let block: &[u8; 16] = data[at..at + 16].try_into().expect("16 bytes");
            // SAFETY: `block` is 16 readable bytes; the load is unaligned.
            let block = unsafe { _mm_loadu_si128(block.as_ptr().cast()) };
            x = _mm_xor_si128(fold_128(x, k128), block);
            at += 16;
        }
        // The 128 bits left, then the tail, through the crc32 instruction (no pre-inversion:
        // it went in above).
        let low = _mm_cvtsi128_si64(x) as u64;
        let high = _mm_extract_epi64::<1>(x) as u64;
        let mut crc = _mm_crc32_u64(_mm_crc32_u64(0, low), high) as u32;
        for &byte in &data[at..] {
            crc = _mm_crc32_u8(crc, byte);
        }
        !crc
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `x^n mod P`, bit-reflected and shifted left by one (the folding constants' form).
    fn x_to_the(n: u32) -> i64 {
        let mut r: u64 = 1;
        for _ in 0..n {
            r <<= 1;
            if r >> 32 != 0 {
                r ^= 0x1_1EDC_6F41;
            }
        }
        i64::from((r as u32).reverse_bits()) << 1
    }

    #[cfg(all(target_arch = "x86_64", framegate_vpclmulqdq))]
    #[test]
    fn constants_are_x_to_the_n_mod_p() {
        use super::fold::*;
        assert_eq!(
            [
                K_1024_PLUS,
                K_1024_MINUS,
                K_256_PLUS,
                K_256_MINUS,
                K_128_PLUS,
                K_128_MINUS
            ],
            [1056, 992, 288, 224, 160, 96].map(x_to_the)
        );
    }

    #[test]
    fn known_values() {
        // RFC 3720, B.4: 32 bytes of zeros, of 0xff, and ascending.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46dd_794e);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    /// What the folding computes for `data`, where this CPU can run it (and `data` is long
    /// enough to start); `None` elsewhere. Called directly, so that the tests check the
    /// folding on every length from 128 bytes on, not just where [`crc32c`] picks it.
    fn folded(data: &[u8]) -> Option<u32> {
        #[cfg(all(target_arch = "x86_64", framegate_vpclmulqdq))]
        if data.len() >= 128 && fold::available() {
            // SAFETY: `available` checked the CPU features.
            return Some(unsafe { fold::crc32c(data) });
        }
        let _ = data;
        None
    }

    #[test]
    fn every_length_around_the_fold_boundaries_matches_the_crate() {
        let data: Vec<u8> = (0..2048u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for len in (0..600).chain(1000..1100).chain([2047, 2048]) {
            let want = crc32c::crc32c(&data[..len]);
            assert_eq!(crc32c(&data[..len]), want, "len {len}");
            if let Some(folded) = folded(&data[..len]) {
                assert_eq!(folded, want, "folded, len {len}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_payload_matches_the_crate(
            data in proptest::collection::vec(any::<u8>(), 0..70_000),
            start in 0usize..64,
        ) {
            // Unaligned starts too: the loads must not assume alignment.
            let data = &data[start.min(data.len())..];
            let want = crc32c::crc32c(data);
            prop_assert_eq!(crc32c(data), want);
            if let Some(folded) = folded(data) {
                prop_assert_eq!(folded, want);
            }
        }
    }
}
