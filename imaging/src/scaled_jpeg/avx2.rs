//! The 1/4-scale decoder's MCU compiled for x86-64 with AVX2 (and BMI1, BMI2 and LZCNT, which
//! shift the bit buffer without touching the flags), with both reduced IDCTs in vectors: the
//! chroma blocks' `jpeg_idct_4x4` (the portable one was about 9% of an 800-pixel resize of the
//! bench photo: stubbing it out took 35.3 ms to 32 ms) and the four luma blocks' `jpeg_idct_2x2`
//! at once, without the DC-only branch. Measured on the cold path (a fresh process decoding and
//! resizing the photo once, alternating builds): 39.2 to 36.7 ms for the chroma IDCT, 38.3 to
//! 37.5 ms more for the luma. Same pixels as the portable code: the same 32-bit wrapping
//! arithmetic, lane by lane (the tests compare both IDCTs with the portable ones on random and
//! hostile blocks; the decoder's own tests compare its output with libjpeg-turbo's).
//!
//! The second module of the workspace with `unsafe` code, after `webp.rs`, for two things:
//! calling code compiled for features the CPU must have (an [`Avx2`], the proof that it has
//! them, is made only by [`Avx2::detect`]), and unaligned vector loads and stores of arrays
//! whose length is checked where they are sliced.

#![allow(unsafe_code)]

// The intrinsics (`_mm*`) and the vector type.
use std::arch::x86_64::*;

use super::{
    Bits, Block2x2, Block4x4, Cpu, FIX_0_211164243, FIX_0_509795579, FIX_0_601344887,
    FIX_0_765366865, FIX_0_899976223, FIX_1_061594337, FIX_1_451774981, FIX_1_847759065,
    FIX_2_172734803, FIX_2_562915447, McuTables, ROW_FACTOR, mcu_quarter,
};

/// Proof that this CPU has AVX2, BMI1, BMI2 and LZCNT: only [`Avx2::detect`] makes one.
#[derive(Clone, Copy)]
pub(super) struct Avx2(());

impl Avx2 {
    /// `Some` on a CPU with every feature the code here is compiled for (std caches the answer).
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt"))
        .then_some(Self(()))
    }
}

impl Cpu for Avx2 {
    #[inline(always)]
    fn mcu_quarter(
        self,
        tables: &McuTables<'_>,
        bits: &mut Bits<'_>,
        pred: &mut [i32; 3],
    ) -> Option<[[[u8; 4]; 4]; 3]> {
        // SAFETY: `self` proves that the CPU has every feature `mcu` is compiled for.
        unsafe { mcu(self, tables, bits, pred) }
    }

    #[inline(always)]
    fn idct_luma(
        self,
        coefs: &[Block2x2; 4],
        _ends: &[u32; 4],
        factors: &[i32; 64],
    ) -> [[u8; 4]; 4] {
        // SAFETY: as above.
        unsafe { idct_2x2_four(coefs, factors) }
    }

    #[inline(always)]
    fn idct_4x4<const USED: usize>(self, coef: &Block4x4, quant: &[i32; 64]) -> [[u8; 4]; 4] {
        // SAFETY: as above.
        unsafe { idct_4x4::<USED>(coef, quant) }
    }
}

/// [`mcu_quarter`] compiled for AVX2, BMI1, BMI2 and LZCNT; not inlined, as the portable one.
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt")]
#[inline(never)]
fn mcu(
    cpu: Avx2,
    tables: &McuTables<'_>,
    bits: &mut Bits<'_>,
    pred: &mut [i32; 3],
) -> Option<[[[u8; 4]; 4]; 3]> {
    mcu_quarter(cpu, tables, bits, pred)
}

/// [`super::idct_2x2`] of an MCU's four luma blocks at once, in vectors of eight 32-bit lanes:
/// pass 1 a block at a time, its five columns in lanes (the other three compute zeros); a
/// transpose puts the eight rows of work space (two a block) in lanes, and pass 2 takes them at
/// once. A block with only its DC term takes the same path: `idct_2x2_dc`'s shortcut computes
/// the same pixels, and a branch on it would be mispredicted.
#[target_feature(enable = "avx2")]
#[inline]
fn idct_2x2_four(coefs: &[Block2x2; 4], factors: &[i32; 64]) -> [[u8; 4]; 4] {
    // Pass 1 (CONST_BITS - PASS1_BITS + 2): row r of the block dequantised and weighted by the
    // folded factors; work space rows 0 and 1 of block b, lane c: column c's.
    let work_space = |b: usize| -> [__m256i; 2] {
        let term = |r: usize| dequantised_row(&coefs[b], factors, r);
        let tmp10 = term(0);
        let tmp0 = _mm256_add_epi32(
            _mm256_add_epi32(term(1), term(2)),
            _mm256_add_epi32(term(3), term(4)),
        );
        [
            descale::<13>(_mm256_add_epi32(tmp10, tmp0)),
            descale::<13>(_mm256_sub_epi32(tmp10, tmp0)),
        ]
    };
    let [r0, r1] = work_space(0);
    let [r2, r3] = work_space(1);
    let [r4, r5] = work_space(2);
    let [r6, r7] = work_space(3);
    // Transposed: column c of the eight work space rows, lane k the row of block k / 2.
    let (t0, t1) = (_mm256_unpacklo_epi32(r0, r1), _mm256_unpackhi_epi32(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_epi32(r2, r3), _mm256_unpackhi_epi32(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_epi32(r4, r5), _mm256_unpackhi_epi32(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_epi32(r6, r7), _mm256_unpackhi_epi32(r6, r7));
    let (u0, u4) = (_mm256_unpacklo_epi64(t0, t2), _mm256_unpacklo_epi64(t4, t6));
    let (u1, u5) = (_mm256_unpackhi_epi64(t0, t2), _mm256_unpackhi_epi64(t4, t6));
    let (u2, u6) = (_mm256_unpacklo_epi64(t1, t3), _mm256_unpacklo_epi64(t5, t7));
    let (u3, u7) = (_mm256_unpackhi_epi64(t1, t3), _mm256_unpackhi_epi64(t5, t7));
    let c0 = _mm256_permute2x128_si256::<0x20>(u0, u4);
    let c1 = _mm256_permute2x128_si256::<0x20>(u1, u5);
    let c2 = _mm256_permute2x128_si256::<0x20>(u2, u6);
    let c3 = _mm256_permute2x128_si256::<0x20>(u3, u7);
    let c4 = _mm256_permute2x128_si256::<0x31>(u0, u4);
    // Pass 2 (CONST_BITS + PASS1_BITS + 3 + 2): each row's two pixels.
    let times = |a, f: i32| _mm256_mullo_epi32(a, _mm256_set1_epi32(f));
    let tmp10 = _mm256_slli_epi32::<15>(c0);
    let tmp0 = _mm256_add_epi32(
        _mm256_add_epi32(times(c1, ROW_FACTOR[1]), times(c2, ROW_FACTOR[2])),
        _mm256_add_epi32(times(c3, ROW_FACTOR[3]), times(c4, ROW_FACTOR[4])),
    );
    let left = range_limited(descale::<20>(_mm256_add_epi32(tmp10, tmp0)));
    let right = range_limited(descale::<20>(_mm256_sub_epi32(tmp10, tmp0)));
    // Bytes: left pixels of rows 0..4, right of 0..4, left of 4..8, right of 4..8; then the
    // MCU's 4x4, row by row (row k of block b = k / 2 is MCU row (b / 2) * 2 + k % 2, its
    // columns (b % 2) * 2 and one more).
    let packed = _mm256_packs_epi32(left, right);
    let bytes = _mm_packus_epi16(
        _mm256_castsi256_si128(packed),
        _mm256_extracti128_si256::<1>(packed),
    );
    pixels_in_order(
        bytes,
        _mm_setr_epi8(0, 4, 2, 6, 1, 5, 3, 7, 8, 12, 10, 14, 9, 13, 11, 15),
    )
}

/// [`super::idct_4x4`] in vectors of eight 32-bit lanes: pass 1 takes the seven columns at
/// once (a lane each; the eighth computes zeros), a transpose puts the four rows of work space
/// in lanes, and pass 2 takes them at once. Rows from `USED` on are zeros, not loaded.
#[target_feature(enable = "avx2")]
#[inline]
fn idct_4x4<const USED: usize>(coef: &Block4x4, quant: &[i32; 64]) -> [[u8; 4]; 4] {
    // No closures or array helpers here: compiled without AVX2, they would not be inlined.
    let row = |r: usize| -> __m256i {
        if r < USED {
            dequantised_row(coef, quant, r)
        } else {
            _mm256_setzero_si256()
        }
    };
    let rows = [row(0), row(1), row(2), row(3), row(4), row(5), row(6)];
    // Work space row i, lane j: column j's i-th value (CONST_BITS - PASS1_BITS + 1).
    let [w0, w1, w2, w3] = pass(rows);
    let [w0, w1, w2, w3] = [
        descale::<12>(w0),
        descale::<12>(w1),
        descale::<12>(w2),
        descale::<12>(w3),
    ];
    // Transposed: lanes 0..4 of column j (j < 4) hold its four rows, lanes 4..8 column j + 4's.
    let (t0, t1) = (_mm256_unpacklo_epi32(w0, w1), _mm256_unpackhi_epi32(w0, w1));
    let (t2, t3) = (_mm256_unpacklo_epi32(w2, w3), _mm256_unpackhi_epi32(w2, w3));
    let c04 = _mm256_unpacklo_epi64(t0, t2);
    let c15 = _mm256_unpackhi_epi64(t0, t2);
    let c26 = _mm256_unpacklo_epi64(t1, t3);
    let c37 = _mm256_unpackhi_epi64(t1, t3);
    let high = |c| _mm256_permute2x128_si256::<0x01>(c, c);
    // Pass 2, in lanes 0..4 (one per row): output column k of each row (CONST_BITS +
    // PASS1_BITS + 3 + 1), range-limited as libjpeg's table does (see below).
    let columns = [c04, c15, c26, c37, high(c04), high(c15), high(c26)];
    let [o0, o1, o2, o3] = pass(columns);
    let limited = |x| range_limited(descale::<19>(x));
    let [o0, o1, o2, o3] = [limited(o0), limited(o1), limited(o2), limited(o3)];
    let low = _mm256_castsi256_si128;
    // Bytes column by column (k * 4 + row), then row by row.
    let by_column = _mm_packus_epi16(
        _mm_packs_epi32(low(o0), low(o1)),
        _mm_packs_epi32(low(o2), low(o3)),
    );
    pixels_in_order(
        by_column,
        _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
    )
}

/// Sixteen pixels, byte `i` of the result taken from byte `order[i]` of `bytes`: 4x4, row by
/// row.
#[target_feature(enable = "avx2")]
#[inline]
fn pixels_in_order(bytes: __m128i, order: __m128i) -> [[u8; 4]; 4] {
    let mut pixels = [[0u8; 4]; 4];
    // SAFETY: `pixels` is 16 contiguous bytes; the store is unaligned.
    unsafe { _mm_storeu_si128(pixels.as_mut_ptr().cast(), _mm_shuffle_epi8(bytes, order)) };
    pixels
}

/// Row `r` of a block (either layout: eight slots a row) dequantised: `coef * quant` in eight
/// lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn dequantised_row(coef: &[i16; 64], quant: &[i32; 64], r: usize) -> __m256i {
    let (c, q) = (&coef[r * 8..r * 8 + 8], &quant[r * 8..r * 8 + 8]);
    // SAFETY: `c` is eight i16 (16 bytes) and `q` eight i32 (32 bytes), as sliced above; both
    // loads are unaligned.
    let (c, q) = unsafe {
        (
            _mm_loadu_si128(c.as_ptr().cast()),
            _mm256_loadu_si256(q.as_ptr().cast()),
        )
    };
    _mm256_mullo_epi32(_mm256_cvtepi16_epi32(c), q)
}

/// The 1-D pass of `jpeg_idct_4x4` over the values 0, 1, 2, 3, 5, 6, 7 of a column or row, in
/// every lane: its four outputs before descaling (the portable `pass`, term for term).
#[target_feature(enable = "avx2")]
#[inline]
fn pass(v: [__m256i; 7]) -> [__m256i; 4] {
    let times = |a, f: i32| _mm256_mullo_epi32(a, _mm256_set1_epi32(f));
    let tmp0 = _mm256_slli_epi32::<14>(v[0]);
    let tmp2 = _mm256_add_epi32(times(v[2], FIX_1_847759065), times(v[5], -FIX_0_765366865));
    let (tmp10, tmp12) = (_mm256_add_epi32(tmp0, tmp2), _mm256_sub_epi32(tmp0, tmp2));
    let (z1, z2, z3, z4) = (v[6], v[4], v[3], v[1]);
    let odd0 = _mm256_add_epi32(
        _mm256_add_epi32(times(z1, -FIX_0_211164243), times(z2, FIX_1_451774981)),
        _mm256_add_epi32(times(z3, -FIX_2_172734803), times(z4, FIX_1_061594337)),
    );
    let odd2 = _mm256_add_epi32(
        _mm256_add_epi32(times(z1, -FIX_0_509795579), times(z2, -FIX_0_601344887)),
        _mm256_add_epi32(times(z3, FIX_0_899976223), times(z4, FIX_2_562915447)),
    );
    [
        _mm256_add_epi32(tmp10, odd2),
        _mm256_add_epi32(tmp12, odd0),
        _mm256_sub_epi32(tmp12, odd0),
        _mm256_sub_epi32(tmp10, odd2),
    ]
}

/// `(x + 2^(N-1)) >> N` in every lane, wrapping.
#[target_feature(enable = "avx2")]
#[inline]
fn descale<const N: i32>(x: __m256i) -> __m256i {
    _mm256_srai_epi32::<N>(_mm256_add_epi32(x, _mm256_set1_epi32(1 << (N - 1))))
}

/// libjpeg's range limit (the portable `range_limit`'s table) as a value that the saturating
/// packs turn into the same byte: `(x + 512) & 1023` minus 384 is `x + 128` for the table's
/// 0..=127 and 896..=1023 (mid-grey plus the sample, wrapped), 256 to 639 (which saturate to
/// 255) for its 128..=511, and negative (0) for its 512..=895.
#[target_feature(enable = "avx2")]
#[inline]
fn range_limited(x: __m256i) -> __m256i {
    let wrapped = _mm256_and_si256(
        _mm256_add_epi32(x, _mm256_set1_epi32(512)),
        _mm256_set1_epi32(1023),
    );
    _mm256_sub_epi32(wrapped, _mm256_set1_epi32(384))
}

#[cfg(test)]
mod tests {
    use super::super::{Portable, STORE_2X2, STORE_4X4, idct_4x4_quant, idct_factors};
    use super::*;

    /// Random blocks from a small deterministic generator (xorshift), so that a failure names
    /// its block: quantisers and coefficients of every size, a real stream's up to hostile ones
    /// whose products wrap, in turns.
    struct Blocks {
        state: u64,
        coef_bits: u32,
    }

    impl Blocks {
        fn next(&mut self) -> u64 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            self.state
        }

        /// The next case's quantisation table (zigzag order); its coefficients follow from
        /// [`Blocks::coefficient`].
        fn quantisers(&mut self, case: u32) -> [u16; 64] {
            let (coef_bits, quant_bits) = match case % 4 {
                0 => (6, 6),
                1 => (11, 8),
                2 => (16, 8),
                _ => (16, 16),
            };
            self.coef_bits = coef_bits;
            std::array::from_fn(|_| (self.next() as u16 >> (16 - quant_bits)).max(1))
        }

        fn coefficient(&mut self) -> i16 {
            (self.next() as u16 as i16) >> (16 - self.coef_bits)
        }

        /// A block's end (as [`ac_into`](super::super::ac_into) returns it): 1 to 64.
        fn end(&mut self) -> usize {
            1 + (self.next() % 64) as usize
        }
    }

    /// This CPU's proof of AVX2 and blocks from `seed`; `None` (and a word why) without AVX2.
    fn cases(seed: u64) -> Option<(Avx2, Blocks)> {
        let cpu = Avx2::detect();
        if cpu.is_none() {
            eprintln!("no AVX2 here: nothing to compare");
        }
        Some((
            cpu?,
            Blocks {
                state: seed,
                coef_bits: 0,
            },
        ))
    }

    #[test]
    fn the_vector_luma_idct_is_the_portable_one() {
        let Some((cpu, mut blocks)) = cases(0x2545_F491_4F6C_DD1D) else {
            return;
        };
        for mcu in 0..100_000u32 {
            let factors = idct_factors(&blocks.quantisers(mcu));
            let mut coefs: [Block2x2; 4] = [[0; 64]; 4];
            let mut ends = [0u32; 4];
            for (coef, end) in coefs.iter_mut().zip(&mut ends) {
                // A third of the blocks DC only, as `ac_into` reports them (end 1).
                *end = match blocks.next() % 3 {
                    0 => 1,
                    _ => blocks.end() as u32,
                };
                for k in 0..*end as usize {
                    coef[usize::from(STORE_2X2[k]) & 63] = blocks.coefficient();
                }
            }
            assert_eq!(
                cpu.idct_luma(&coefs, &ends, &factors),
                Portable.idct_luma(&coefs, &ends, &factors),
                "MCU {mcu}: {coefs:?} ends {ends:?} with {factors:?}"
            );
        }
    }

    #[test]
    fn the_vector_idct_is_the_portable_one() {
        let Some((cpu, mut blocks)) = cases(0x9E37_79B9_7F4A_7C15) else {
            return;
        };
        for block in 0..200_000u32 {
            let quant = idct_4x4_quant(&blocks.quantisers(block));
            // Only the first `end` zigzag positions set, as the decoder's `end` says.
            let end = blocks.end();
            let mut coef: Block4x4 = [0; 64];
            for k in 0..end {
                coef[usize::from(STORE_4X4[k]) & 63] = blocks.coefficient();
            }
            // (Values nobody reads land in slot 63, which neither IDCT may read.)
            let (ours, portable) = match end {
                ..=6 => (
                    cpu.idct_4x4::<3>(&coef, &quant),
                    super::super::idct_4x4::<3>(&coef, &quant),
                ),
                7..=15 => (
                    cpu.idct_4x4::<4>(&coef, &quant),
                    super::super::idct_4x4::<4>(&coef, &quant),
                ),
                _ => (
                    cpu.idct_4x4::<7>(&coef, &quant),
                    super::super::idct_4x4::<7>(&coef, &quant),
                ),
            };
            assert_eq!(ours, portable, "block {block}: {coef:?} with {quant:?}");
        }
    }
}
