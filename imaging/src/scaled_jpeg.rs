//! A small decoder for the one JPEG shape that dominates real traffic (baseline Huffman, 8-bit,
//! YCbCr 4:2:0, one interleaved scan) at 1/8 and 1/4 scale: thumbnails, and the 800-pixel resize
//! of a 12 MP photo. It computes exactly what libjpeg-turbo computes at those scales (the tests
//! compare every plane and every RGB pixel with libjpeg-turbo's), only faster.
//!
//! Why: libjpeg-turbo spends most of a scaled decode in its Huffman decoder, extracting and
//! storing all 64 coefficients of every block, though its reduced IDCTs read few of them. The
//! bit stream still has to be walked code by code, but:
//! - At 1/8 each 8x8 block becomes one pixel, its DC term divided by 8, so no AC value is ever
//!   extracted: one lookup of the next 12 bits skips every whole (code, value) pair in them at
//!   once (two or three on a photo); it writes DC/8 + 128, what libjpeg's 1x1 IDCT writes.
//! - At 1/4 one lookup of the next 11 bits yields up to two whole pairs with their values
//!   already sign-extended (half the lookups on the bench photo), and each value is stored
//!   where the IDCT reads it, or into a discard slot, without a branch on the position.
//!   libjpeg's `jpeg_idct_2x2` then reads 25 coefficients of each luma block. Chroma is scaled
//!   up by its IDCT instead of upsampled (`jpeg_idct_4x4`, 49 coefficients), as libjpeg-turbo
//!   does for RGB: to RGB with its YCbCr tables, as it does; to planes, chroma planes the luma
//!   plane's size (libjpeg-turbo's own planes at 1/4 have half-size chroma from `jpeg_idct_2x2`,
//!   which has averaged away detail the resize to 4:2:0 output keeps: see [`Yuv420::resize`]).
//! - The bit buffer is topped up without a branch on how full it is (four lookups per top-up),
//!   and lives in registers; the IDCTs fold dequantisation into their first pass, skip the
//!   columns a block's last position cannot reach, and take DC-only blocks in one step; sign
//!   extension and range limiting are branch-free. Each of these was measured: the branches
//!   they remove are mispredicted several times per block.
//!
//! On x86-64 with AVX2 the MCU loop is compiled for it and both IDCTs run in vectors
//! (`avx2.rs`, picked per decode; the same pixels).
//!
//! On the bench photo (`make bench`, one core) the 1/4 decode, to planes or to RGB, takes about
//! 0.8 of libjpeg-turbo's time at 1/4, and the 1/8 decode about 0.6.
//!
//! Anything else (progressive, arithmetic coding, 12-bit, other subsamplings, several scans)
//! and anything odd in the data (a bad code, a coefficient past position 63, a missing restart
//! marker, a truncated scan) returns `None`, and the caller decodes with libjpeg-turbo instead,
//! which then reports the error exactly as it would have. The one leniency: a file whose scan
//! is complete but whose end marker is missing decodes here, where libjpeg-turbo would warn
//! (and we would refuse).

use crate::raster::Raster;
use crate::yuv::Yuv420;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Bits looked up at once in the Huffman tables.
const LOOKUP: u32 = 10;
const LOOKUP_SIZE: usize = 1 << LOOKUP;

/// A Huffman table: a direct lookup for codes up to `LOOKUP` bits, canonical decoding beyond.
struct Huffman {
    /// `(code length << 8) | symbol`, 0 when the code is longer than `LOOKUP` bits.
    fast: Box<[u16; LOOKUP_SIZE]>,
    /// AC only: code length, run and value size decoded together, see [`AC_EOB`].
    ac: Box<[u32; LOOKUP_SIZE]>,
    /// AC only: every whole (code, value) pair in the next [`SKIP`] bits, skipped at once, see
    /// [`skip_entry`].
    skip: Box<[u16; SKIP_SIZE]>,
    /// AC only: up to two whole (code, value) pairs in the next [`PAIRS`] bits with their values
    /// decoded, see [`PairEntry`].
    pairs: Box<[u64; PAIRS_SIZE]>,
    /// Per code length 1..=16: largest code (-1: none), and offset into `symbols`.
    max_code: [i32; 17],
    offset: [i32; 17],
    symbols: Vec<u8>,
}

/// Bits looked at once when skipping AC terms (several codes per lookup).
const SKIP: u32 = 12;
const SKIP_SIZE: usize = 1 << SKIP;

/// Packs a skip lookup: bits 0..4 the bits of all its pairs together, 4..10 the coefficient
/// positions they cover (runs included), bit 10 the last one is the end of the block. 0: the
/// first pair does not fit in [`SKIP`] bits.
fn skip_entry(bits: u32, positions: u32, end_of_block: bool) -> u16 {
    (bits | positions << 4 | u32::from(end_of_block) << 10) as u16
}

/// Bits looked at once when decoding AC pairs with their values (1/4 scale).
const PAIRS: u32 = 11;
const PAIRS_SIZE: usize = 1 << PAIRS;

/// One pair lookup, unpacked. Packed in a `u64` (0: nothing fits, take the one-pair path): bits
/// 0..4 `used`, 4..10 `positions`, 10 `end_of_block`, 11..15 the first value's offset, 16..22
/// the second's, 32..48 the first value, 48..64 the second.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct PairEntry {
    /// Bits of the pairs and of the end of block together.
    used: u32,
    /// Coefficient positions the pairs cover, runs included.
    positions: u32,
    end_of_block: bool,
    /// Offset from the current position and value of each pair; a missing second pair is a zero
    /// at the position after the first.
    first: (u32, i16),
    second: (u32, i16),
}

impl PairEntry {
    fn pack(self) -> u64 {
        u64::from(self.used)
            | u64::from(self.positions) << 4
            | u64::from(self.end_of_block) << 10
            | u64::from(self.first.0) << 11
            | u64::from(self.second.0) << 16
            | u64::from(self.first.1 as u16) << 32
            | u64::from(self.second.1 as u16) << 48
    }

    #[inline(always)]
    fn unpack(e: u64) -> Self {
        Self {
            used: (e & 15) as u32,
            positions: ((e >> 4) & 63) as u32,
            end_of_block: (e >> 10) & 1 != 0,
            first: (((e >> 11) & 15) as u32, (e >> 32) as u16 as i16),
            second: (((e >> 16) & 63) as u32, (e >> 48) as u16 as i16),
        }
    }
}

/// Packs an AC lookup: bits 0..6 the bits consumed by code and value together (so a shift can
/// take the entry as is), bit 6 end of block, 8..12 the run. 0: a code longer than the lookup.
const AC_EOB: u32 = 1 << 6;

#[inline(always)]
fn ac_total(e: u32) -> u32 {
    e & 63
}

#[inline(always)]
fn ac_run(e: u32) -> u32 {
    (e >> 8) & 15
}

/// Whether an AC symbol ends the block: EOB, and as in libjpeg any run with a zero size other
/// than ZRL (15, 0), which no encoder writes.
fn ends_block(run: u32, size: u32) -> bool {
    size == 0 && run != 15
}

/// JPEG's sign extension of a `size`-bit value (0 for size 0), without a branch to mispredict
/// (the sign of a coefficient is a coin toss).
#[inline(always)]
fn extend(bits: u32, size: u32) -> i32 {
    let v = bits as i32;
    let negative = i32::from(v < (1 << size) >> 1);
    v - negative * ((1 << size) - 1)
}

impl Huffman {
    /// Builds from a DHT segment's 16 counts and symbols; `None` if the code is invalid.
    fn new(counts: &[u8], symbols: &[u8]) -> Option<Self> {
        let mut fast = Box::new([0u16; LOOKUP_SIZE]);
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let mut code: u32 = 0;
        let mut k: usize = 0;
        for len in 1..=16u32 {
            let n = usize::from(*counts.get(len as usize - 1)?);
            offset[len as usize] = k as i32 - code as i32;
            for _ in 0..n {
                let sym = *symbols.get(k)?;
                if code >= (1 << len) {
                    return None; // over-subscribed
                }
                if len <= LOOKUP {
                    let first = (code << (LOOKUP - len)) as usize;
                    let entries = fast.get_mut(first..first + (1 << (LOOKUP - len)))?;
                    entries.fill(((len as u16) << 8) | u16::from(sym));
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                max_code[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        let mut ac = Box::new([0u32; LOOKUP_SIZE]);
        for (entry, &f) in ac.iter_mut().zip(fast.iter()) {
            let len = u32::from(f >> 8);
            if len == 0 {
                continue;
            }
            let sym = u32::from(f & 0xFF);
            let (run, size) = (sym >> 4, sym & 15);
            *entry = if ends_block(run, size) {
                AC_EOB | len
            } else {
                (len + size) | (run << 8)
            };
        }
        Some(Self {
            fast,
            ac,
            skip: Box::new([0u16; SKIP_SIZE]),
            pairs: Box::new([0u64; PAIRS_SIZE]),
            max_code,
            offset,
            symbols: symbols.get(..k)?.to_vec(),
        })
    }

    /// Fills the skip lookup (AC tables only): for each `SKIP`-bit window, the whole (code,
    /// value) pairs at its start, read with the one-code lookup (a code longer than `LOOKUP`
    /// bits ends the entry and takes the one-code path). An entry stops after an end of block,
    /// before a pair that does not fit, and before its positions would pass 63.
    fn build_skip(&mut self) {
        for window in 0..SKIP_SIZE as u32 {
            let (mut used, mut positions) = (0u32, 0u32);
            let mut entry = 0;
            loop {
                let rest = (window << used) & (SKIP_SIZE as u32 - 1);
                // Bits past the window read as zeros; a pair reaching into them does not fit.
                let e = self.ac[(rest >> (SKIP - LOOKUP)) as usize & (LOOKUP_SIZE - 1)];
                if e == 0 || used + ac_total(e) > SKIP {
                    break;
                }
                if e & AC_EOB != 0 {
                    entry = skip_entry(used + ac_total(e), positions, true);
                    break;
                }
                if positions + ac_run(e) + 1 > 63 {
                    break;
                }
                used += ac_total(e);
                positions += ac_run(e) + 1;
                entry = skip_entry(used, positions, false);
            }
            self.skip[window as usize] = entry;
        }
    }

    /// Fills the pair lookup (AC tables only): for each `PAIRS`-bit window, the first one or
    /// two whole (code, value) pairs at its start with their values, and an end of block right
    /// after them. A code longer than `LOOKUP` bits, or a pair reaching past the window, ends
    /// the entry (an entry with nothing in it sends the decoder to the one-pair path).
    fn build_pairs(&mut self) {
        for window in 0..PAIRS_SIZE as u32 {
            let mut entry = PairEntry::default();
            let mut pairs = 0;
            loop {
                let rest = (window << entry.used) & (PAIRS_SIZE as u32 - 1);
                let f = self.fast[(rest >> (PAIRS - LOOKUP)) as usize & (LOOKUP_SIZE - 1)];
                let len = u32::from(f >> 8);
                let (run, size) = (u32::from(f & 0xFF) >> 4, u32::from(f & 0x0F));
                if len == 0 || entry.used + len + size > PAIRS {
                    break;
                }
                if ends_block(run, size) {
                    entry.used += len;
                    entry.end_of_block = true;
                    break;
                }
                if entry.positions + run + 1 > 64 {
                    break;
                }
                let value_bits = (rest >> (PAIRS - len - size)) & ((1 << size) - 1);
                let value = extend(value_bits, size) as i16;
                if pairs == 0 {
                    entry.first = (run, value);
                } else {
                    entry.second = (entry.positions + run, value);
                }
                entry.used += len + size;
                entry.positions += run + 1;
                pairs += 1;
                if pairs == 2 {
                    break;
                }
            }
            if pairs < 2 {
                // The unused second store writes a zero where no value has been decoded yet.
                entry.second = (entry.positions, 0);
            }
            self.pairs[window as usize] = if entry.used == 0 { 0 } else { entry.pack() };
        }
    }

    /// Decodes one symbol the slow way (code longer than `LOOKUP` bits) from the bit buffer:
    /// the code's length and the symbol; the caller consumes. It takes the buffer by value so
    /// that the decoding loops never take the bit reader's address (which would keep it in
    /// memory instead of registers).
    #[cold]
    #[inline(never)]
    fn slow_symbol(&self, buf: u64) -> Option<(u32, u8)> {
        for len in LOOKUP + 1..=16 {
            let code = (buf >> (64 - len)) as i32;
            if code <= *self.max_code.get(len as usize)? {
                let index = code + self.offset.get(len as usize)?;
                return Some((len, *self.symbols.get(usize::try_from(index).ok()?)?));
            }
        }
        None
    }

    #[inline(always)]
    fn symbol(&self, bits: &mut Bits<'_>) -> Option<u8> {
        let f = self.fast[bits.peek(LOOKUP) as usize & (LOOKUP_SIZE - 1)];
        let len = u32::from(f >> 8);
        if len == 0 {
            let (len, sym) = self.slow_symbol(bits.buf)?;
            bits.consume(len);
            return Some(sym);
        }
        bits.consume(len);
        Some((f & 0xFF) as u8)
    }
}

/// The entropy-coded bit stream: a 64-bit buffer, most significant bit next.
///
/// `Copy` and refilled by value on the slow path, so that once everything is inlined into the
/// decoding loop the buffer and count live in registers.
#[derive(Clone, Copy)]
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    count: u32,
    /// Zero bits made up past a marker or the end of the data.
    padded: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            buf: 0,
            count: 0,
            padded: 0,
            at_marker: false,
        }
    }

    /// Makes sure at least 32 bits are buffered (a code and its value take at most 27), topping
    /// the buffer up when it runs low.
    #[inline(always)]
    fn refill(&mut self) {
        if self.count < 32 {
            self.top_up();
        }
    }

    /// Tops the buffer up to at least 49 bits, without a branch on how many it holds (which the
    /// decoding loops would mispredict every few codes).
    ///
    /// Fast path: the next eight bytes hold no 0xFF (no stuffing, no marker), so they are the
    /// next 64 bits of the stream. All of them are or-ed in below the buffered bits, whole bytes
    /// counted, and the partial byte left beyond `count` is the same data the next top-up or
    /// [`fill_slow`] puts there again, so the bits past `count` are always either zero or the
    /// stream's own.
    #[inline(always)]
    fn top_up(&mut self) {
        if !self.at_marker
            && let Some(chunk) = self.data.get(self.pos..self.pos + 8)
        {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_be_bytes(word);
            let x = !w;
            let has_ff = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
            if has_ff == 0 {
                // `count` is at most 63 here: a top-up leaves at most 63, fill_slow at most 56.
                self.buf |= w >> self.count;
                self.pos += ((63 - self.count) >> 3) as usize;
                self.count |= 56;
                return;
            }
        }
        if self.count <= 48 {
            let state = (self.pos, self.buf, self.count, self.padded, self.at_marker);
            (self.pos, self.buf, self.count, self.padded, self.at_marker) =
                fill_slow(self.data, state);
        }
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n & 63;
        self.count -= n;
    }

    #[inline(always)]
    fn get(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// The reader's state without its data, to carry across a move of the data (see
    /// [`ScanData::ensure`]).
    #[inline(always)]
    fn state(&self) -> BitsState {
        (self.pos, self.buf, self.count, self.padded, self.at_marker)
    }

    /// A reader over `data` in `state` (the position rebased by the caller).
    #[inline(always)]
    fn resume(data: &'a [u8], state: BitsState) -> Self {
        let (pos, buf, count, padded, at_marker) = state;
        Self {
            data,
            pos,
            buf,
            count,
            padded,
            at_marker,
        }
    }

    /// Whether any made-up bit was consumed: the scan was cut short.
    #[inline(always)]
    fn overrun(&self) -> bool {
        self.padded > self.count
    }

    /// Expects restart marker `n` (0..8) where the stream stopped; resets the buffer.
    #[inline(always)]
    fn restart(&mut self, n: u8) -> Option<()> {
        if self.overrun() || !self.at_marker {
            return None;
        }
        while self.data.get(self.pos) == Some(&0xFF) {
            self.pos += 1;
        }
        if self.data.get(self.pos) != Some(&(0xD0 + n)) {
            return None;
        }
        self.pos += 1;
        self.buf = 0;
        self.count = 0;
        self.padded = 0;
        self.at_marker = false;
        Some(())
    }
}

/// [`Bits`] without its data: position, buffer, count, padding, at a marker.
type BitsState = (usize, u64, u32, u32, bool);

/// The byte-by-byte refill of [`Bits`]: stuffed zeros, markers, the end of the data. Takes and
/// returns the state by value so the hot loop's copy never has its address taken.
#[cold]
#[inline(never)]
fn fill_slow(
    data: &[u8],
    (mut pos, mut buf, mut count, mut padded, mut at_marker): BitsState,
) -> BitsState {
    while count <= 48 {
        let mut byte = None;
        if !at_marker {
            match data.get(pos) {
                Some(0xFF) => {
                    if data.get(pos + 1) == Some(&0x00) {
                        pos += 2;
                        byte = Some(0xFF);
                    } else {
                        at_marker = true;
                    }
                }
                Some(&b) => {
                    pos += 1;
                    byte = Some(b);
                }
                None => at_marker = true,
            }
        }
        let byte = byte.unwrap_or_else(|| {
            padded += 8;
            0
        });
        buf |= u64::from(byte) << (56 - count);
        count += 8;
    }
    (pos, buf, count, padded, at_marker)
}

/// One frame's worth of what the headers said.
struct Frame {
    width: u32,
    height: u32,
    /// Quantisation tables in zigzag order for Y, Cb, Cr.
    quant: [[u16; 64]; 3],
    dc: [usize; 3],
    ac: [usize; 3],
    restart_interval: u32,
    scan_start: usize,
}

fn be16(data: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(*data.get(at)?) << 8 | usize::from(*data.get(at + 1)?))
}

/// The four table slots of one class (DC or AC).
type Tables = [Option<Huffman>; 4];
/// Frame size and, per component, its id and quantisation table.
type FrameHeader = (u32, u32, [(u8, usize); 3]);

/// Reads the headers up to the scan; `None` for anything this decoder does not handle. Each AC
/// table gets the multi-code lookup its scale uses, `ac_lookup` ([`Huffman::build_skip`] at
/// 1/8, [`Huffman::build_pairs`] at 1/4), and only that one.
fn parse(data: &[u8], ac_lookup: fn(&mut Huffman)) -> Option<(Frame, Tables, Tables)> {
    let mut pos = 2;
    let mut quant_tables: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: Tables = [None, None, None, None];
    let mut ac_tables: Tables = [None, None, None, None];
    let mut frame: Option<FrameHeader> = None;
    let mut restart_interval = 0;
    loop {
        if *data.get(pos)? != 0xFF {
            return None;
        }
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *data.get(pos)?;
        pos += 1;
        let len = be16(data, pos)?;
        let segment = data.get(pos + 2..pos.checked_add(len)?)?;
        match marker {
            0xDB => {
                let mut s = segment;
                while let Some((&pq_tq, rest)) = s.split_first() {
                    let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
                    let mut table = [0u16; 64];
                    let bytes = if precision == 0 { 64 } else { 128 };
                    let values = rest.get(..bytes)?;
                    for (i, q) in table.iter_mut().enumerate() {
                        *q = if precision == 0 {
                            u16::from(*values.get(i)?)
                        } else {
                            u16::from(*values.get(2 * i)?) << 8 | u16::from(*values.get(2 * i + 1)?)
                        };
                    }
                    *quant_tables.get_mut(id)? = Some(table);
                    s = rest.get(bytes..)?;
                }
            }
            0xC4 => {
                let mut s = segment;
                while let Some((&tc_th, rest)) = s.split_first() {
                    let counts = rest.get(..16)?;
                    let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let symbols = rest.get(16..16 + n)?;
                    let table = Huffman::new(counts, symbols)?;
                    let id = usize::from(tc_th & 15);
                    match tc_th >> 4 {
                        0 => *dc_tables.get_mut(id)? = Some(table),
                        1 => {
                            let mut table = table;
                            ac_lookup(&mut table);
                            *ac_tables.get_mut(id)? = Some(table);
                        }
                        _ => return None,
                    }
                    s = rest.get(16 + n..)?;
                }
            }
            0xC0 | 0xC1 => {
                // 8-bit, three components: Y 2x2, Cb 1x1, Cr 1x1.
                if segment.first() != Some(&8) || segment.get(5) != Some(&3) {
                    return None;
                }
                let height = u32::try_from(be16(segment, 1)?).ok()?;
                let width = u32::try_from(be16(segment, 3)?).ok()?;
                let mut comps = [(0u8, 0usize); 3];
                for (i, c) in comps.iter_mut().enumerate() {
                    let at = 6 + 3 * i;
                    let sampling = *segment.get(at + 1)?;
                    if sampling != if i == 0 { 0x22 } else { 0x11 } {
                        return None;
                    }
                    *c = (*segment.get(at)?, usize::from(*segment.get(at + 2)?));
                }
                // One frame only, of a real size (a second SOF is a lie about the size).
                if width == 0 || height == 0 || frame.is_some() {
                    return None;
                }
                frame = Some((width, height, comps));
            }
            0xDD => restart_interval = u32::try_from(be16(segment, 0)?).ok()?,
            0xDA => {
                let (width, height, comps) = frame?;
                // One scan with the three components in frame order, full spectral range.
                if segment.first() != Some(&3) || segment.get(7..10)? != [0, 63, 0] {
                    return None;
                }
                let mut dc = [0usize; 3];
                let mut ac = [0usize; 3];
                let mut quant = [[0u16; 64]; 3];
                for i in 0..3 {
                    if *segment.get(1 + 2 * i)? != comps.get(i)?.0 {
                        return None;
                    }
                    let tables = *segment.get(2 + 2 * i)?;
                    dc[i] = usize::from(tables >> 4);
                    ac[i] = usize::from(tables & 15);
                    dc_tables.get(dc[i])?.as_ref()?;
                    ac_tables.get(ac[i])?.as_ref()?;
                    quant[i] = (*quant_tables.get(comps.get(i)?.1)?)?;
                }
                let frame = Frame {
                    width,
                    height,
                    quant,
                    dc,
                    ac,
                    restart_interval,
                    scan_start: pos + len,
                };
                return Some((frame, dc_tables, ac_tables));
            }
            // Other frame types (progressive, lossless, arithmetic), DNL, DAC, EOI...
            0xC2 | 0xC3 | 0xC5..=0xCF | 0xD8 | 0xD9 | 0xDC => return None,
            _ => {} // APPn, COM and the rest: skip
        }
        pos += len;
    }
}

/// Decodes one block's AC terms, skipping their values (1/8 scale).
#[inline(always)]
fn skip_ac(table: &Huffman, bits: &mut Bits<'_>) -> Option<()> {
    let mut k = 1u32;
    while k < 64 {
        bits.refill();
        // Several pairs at once while they stay inside the block: their positions end at 63
        // at the latest, and an end of block after them only counts before position 63 (a
        // block that reaches 63 has no end-of-block code: those bits are the next DC code).
        let s = u32::from(table.skip[bits.peek(SKIP) as usize & (SKIP_SIZE - 1)]);
        let (used, positions, end_of_block) = (s & 15, (s >> 4) & 63, s >> 10);
        if used != 0 && k + positions + end_of_block <= 64 {
            bits.consume(used);
            if end_of_block != 0 {
                return Some(());
            }
            k += positions;
            continue;
        }
        let e = table.ac[bits.peek(LOOKUP) as usize & (LOOKUP_SIZE - 1)];
        if e == 0 {
            let (len, sym) = table.slow_symbol(bits.buf)?;
            bits.consume(len);
            let sym = u32::from(sym);
            let (run, size) = (sym >> 4, sym & 15);
            if ends_block(run, size) {
                return Some(());
            }
            bits.consume(size);
            k += run + 1;
            continue;
        }
        bits.consume(ac_total(e));
        if e & AC_EOB != 0 {
            return Some(());
        }
        k += ac_run(e) + 1;
    }
    Some(())
}

/// The DC term of the next block, added to the component's predictor.
#[inline(always)]
fn dc(table: &Huffman, bits: &mut Bits<'_>, pred: &mut i32) -> Option<i32> {
    bits.refill();
    let size = u32::from(table.symbol(bits)?);
    if size > 11 {
        return None;
    }
    *pred = pred.wrapping_add(extend(bits.get(size), size));
    Some(*pred)
}

/// Decodes `data` at `1/denominator` scale (8 or 4) to planes; `None` when this decoder does not
/// handle the file or the scale (see the module docs). `size` is the width and height already
/// checked against the limits: a frame header saying anything else is refused, so nothing here
/// is allocated from an unchecked size.
pub(crate) fn decode(data: impl ScanData, size: (u32, u32), denominator: usize) -> Option<Yuv420> {
    match denominator {
        8 => decode_eighth(data, size),
        4 => decode_quarter(data, size),
        _ => None,
    }
}

/// The decoded planes (whole MCUs, each `(data, stride)`) cut to what libjpeg-turbo's
/// `decompress_to_yuv` hands back for an image of `size`: the luma plane padded to even sizes,
/// the chroma planes `chroma_step` times smaller each way (2: 4:2:0 as stored; 1: scaled up by
/// the IDCT to the luma plane's size). (For an odd size libjpeg-turbo fills the padding row or
/// column with a copy of another one; ours keeps the decoded samples there.) The resampler
/// reads past the image's edge into whatever the planes hold, so MCU padding left in would
/// change the edge pixels.
fn planes(
    (width, height): (u32, u32),
    decoded: [(Vec<u8>, usize); 3],
    chroma_step: u32,
) -> Option<Yuv420> {
    let (yw, yh) = (width.next_multiple_of(2), height.next_multiple_of(2));
    let [y, cb, cr] = decoded;
    let cut = |(mut data, stride): (Vec<u8>, usize), w: u32, h: u32| {
        let (w, h) = (w as usize, h as usize);
        if w != stride {
            for row in 1..h {
                data.copy_within(row * stride..row * stride + w, row * w);
            }
        }
        data.truncate(w * h);
        Raster::new(w as u32, h as u32, 1, data).ok()
    };
    let (cw, ch) = (yw / chroma_step, yh / chroma_step);
    Some(Yuv420 {
        width,
        height,
        y: cut(y, yw, yh)?,
        cb: cut(cb, cw, ch)?,
        cr: cut(cr, cw, ch)?,
        chroma_step,
    })
}

/// Decodes `data` at `1/denominator` scale to RGB, pixel for pixel what libjpeg-turbo gives;
/// `None` when this decoder does not handle the file or the scale (only 1/4: at 1/8 a
/// thumbnail goes to planes). `size` as for [`decode`].
pub(crate) fn decode_rgb(data: &[u8], size: (u32, u32), denominator: usize) -> Option<Raster> {
    match denominator {
        4 => decode_rgb_quarter(data, size),
        _ => None,
    }
}

/// Natural (row-major) index of each zigzag position.
const NATURAL: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Where a coefficient is kept for the 2x2 IDCT: the five rows and columns read
/// (`jpeg_idct_2x2` of jidctred.c reads rows and columns 0, 1, 3, 5 and 7: an even frequency
/// other than 0 averages to nothing over each half of the block), row by row, eight slots a row
/// so that a row loads as one vector (slots 5 to 7 of each row stay zero); [`DISCARD`] for
/// values nobody reads.
const fn compact_2x2(natural: usize) -> usize {
    let (row, col) = (read_2x2(natural / 8), read_2x2(natural % 8));
    if row == 5 || col == 5 {
        DISCARD
    } else {
        row * 8 + col
    }
}

/// Where a row or column is among the five the 2x2 IDCT reads (see [`compact_2x2`]); 5 when it
/// does not read it.
const fn read_2x2(v: usize) -> usize {
    match v {
        0 => 0,
        1 => 1,
        3 => 2,
        5 => 3,
        7 => 4,
        _ => 5,
    }
}

/// The slot of [`Block2x2`] for values nobody reads: past its five rows.
const DISCARD: usize = 63;

/// Per zigzag position (and past 63, where only a zero or a bad stream can land), the slot of
/// [`Block2x2`] its value goes to: every value is stored somewhere, so the decoding loop has no
/// branch on the position (it would be mispredicted about every other coefficient).
const STORE_2X2: [u8; 128] = {
    let mut at = [DISCARD as u8; 128];
    let mut k = 0;
    while k < 64 {
        at[k] = compact_2x2(NATURAL[k]) as u8;
        k += 1;
    }
    at
};

/// The 25 coefficients the 2x2 IDCT reads, in five rows of eight slots (see [`compact_2x2`]),
/// and the discard slot.
type Block2x2 = [i16; 64];

/// libjpeg's post-IDCT range limit (jdmaster.c's `range_limit` table from its centre): clamps
/// to 0..=255 around the centre and wraps far-out values the way libjpeg does. A table, as in
/// libjpeg: a branch on the sign of each pixel against mid-grey would be mispredicted half the
/// time.
static RANGE_LIMIT: [u8; 1024] = {
    let mut table = [0u8; 1024];
    let mut i = 0;
    while i < 1024 {
        table[i] = match i {
            0..=127 => (i + 128) as u8,
            128..=511 => 255,
            512..=895 => 0,
            _ => (i - 896) as u8,
        };
        i += 1;
    }
    table
};

#[inline(always)]
fn range_limit(x: i32) -> u8 {
    RANGE_LIMIT[(x & 1023) as usize]
}

// CONST_BITS 13, PASS1_BITS 2 and the multipliers of jidctred.c.
const FIX_0_720959822: i32 = 5906;
const FIX_0_850430095: i32 = 6967;
const FIX_1_272758580: i32 = 10426;
const FIX_3_624509785: i32 = 29692;

/// What pass 1 of `jpeg_idct_2x2` multiplies each row's coefficient by after dequantising it:
/// the DC row is shifted by CONST_BITS + 2, the odd rows 1, 3, 5 and 7 weighted.
const ROW_FACTOR: [i32; 5] = [
    1 << 15,
    FIX_3_624509785,
    -FIX_1_272758580,
    FIX_0_850430095,
    -FIX_0_720959822,
];

/// A component's quantisation table folded into pass 1 of the IDCT, in the layout of
/// [`Block2x2`]: `q * ROW_FACTOR[row]`, so that each coefficient takes one multiplication
/// instead of two. Wrapping multiplication is associative, so `(c * q) * f` and `c * (q * f)`
/// are the same 32 bits.
fn idct_factors(zigzag: &[u16; 64]) -> [i32; 64] {
    let mut factors = [0i32; 64];
    for (k, &q) in zigzag.iter().enumerate() {
        let at = usize::from(STORE_2X2[k]);
        if at != DISCARD {
            factors[at] = i32::from(q).wrapping_mul(ROW_FACTOR[at / 8]);
        }
    }
    factors
}

/// `jpeg_idct_2x2` of jidctred.c (libjpeg-turbo) on a [`Block2x2`] with its
/// [`idct_factors`]: the four pixels, row by row. libjpeg computes in 64-bit integers; every
/// intermediate of a valid stream fits in 32 bits (coefficients of 8-bit samples stay under
/// 2^12 before the shifts below), so this computes in 32, wrapping rather than panicking on
/// hostile values.
#[inline(always)]
fn idct_2x2(coef: &Block2x2, factors: &[i32; 64]) -> [u8; 4] {
    let descale = |x: i32, n: u32| x.wrapping_add(1 << (n - 1)) >> n;
    let term = |at: usize| i32::from(coef[at]).wrapping_mul(factors[at]);
    // Pass 1: columns 0, 1, 3, 5, 7 to two rows of work space (CONST_BITS - PASS1_BITS + 2).
    // An index loop, not `array::from_fn` or iterators: the AVX2 build of the MCU (`avx2::mcu`)
    // did not inline `from_fn` (a call per block, 8% of the transform).
    let mut ws = [[0i32; 5]; 2];
    #[allow(clippy::needless_range_loop)]
    for col in 0..5 {
        let tmp10 = term(col);
        let tmp0 = term(8 + col)
            .wrapping_add(term(16 + col))
            .wrapping_add(term(24 + col))
            .wrapping_add(term(32 + col));
        ws[0][col] = descale(tmp10.wrapping_add(tmp0), 13);
        ws[1][col] = descale(tmp10.wrapping_sub(tmp0), 13);
    }
    // Pass 2: each row to two pixels (CONST_BITS + PASS1_BITS + 3 + 2).
    let mut out = [0u8; 4];
    for (row, w) in ws.iter().enumerate() {
        let tmp10 = w[0].wrapping_shl(15);
        let tmp0 = w[1]
            .wrapping_mul(ROW_FACTOR[1])
            .wrapping_add(w[2].wrapping_mul(ROW_FACTOR[2]))
            .wrapping_add(w[3].wrapping_mul(ROW_FACTOR[3]))
            .wrapping_add(w[4].wrapping_mul(ROW_FACTOR[4]));
        out[row * 2] = range_limit(descale(tmp10.wrapping_add(tmp0), 20));
        out[row * 2 + 1] = range_limit(descale(tmp10.wrapping_sub(tmp0), 20));
    }
    out
}

/// Where a coefficient is kept for the 4x4 IDCT of a chroma block: the seven rows and columns
/// read (`jpeg_idct_4x4` of jidctred.c reads every row and column but 4), row by row, eight
/// slots a row so that a row loads as one vector (the eighth slot of rows 0 to 6 stays zero);
/// 63, the last slot of an eighth row nobody reads, for values nobody reads.
const fn compact_4x4(natural: usize) -> usize {
    let (row, col) = (natural / 8, natural % 8);
    if row == 4 || col == 4 {
        63
    } else {
        // Rows and columns past 4 move up one.
        (row - (row > 4) as usize) * 8 + col - (col > 4) as usize
    }
}

/// [`STORE_2X2`] for [`compact_4x4`].
const STORE_4X4: [u8; 128] = {
    let mut at = [63u8; 128];
    let mut k = 0;
    while k < 64 {
        at[k] = compact_4x4(NATURAL[k]) as u8;
        k += 1;
    }
    at
};

/// The 49 coefficients the 4x4 IDCT reads, in seven rows of eight slots (see [`compact_4x4`]),
/// and the discard slot.
type Block4x4 = [i16; 64];

/// A component's quantisation table in the layout of [`Block4x4`].
fn idct_4x4_quant(zigzag: &[u16; 64]) -> [i32; 64] {
    let mut quant = [0i32; 64];
    for (k, &q) in zigzag.iter().enumerate() {
        let at = usize::from(STORE_4X4[k]);
        if at != 63 {
            quant[at] = i32::from(q);
        }
    }
    quant
}

// The other multipliers of jidctred.c's `jpeg_idct_4x4`.
const FIX_0_211164243: i32 = 1730;
const FIX_0_509795579: i32 = 4176;
const FIX_0_601344887: i32 = 4926;
const FIX_0_765366865: i32 = 6270;
const FIX_0_899976223: i32 = 7373;
const FIX_1_061594337: i32 = 8697;
const FIX_1_451774981: i32 = 11893;
const FIX_1_847759065: i32 = 15137;
const FIX_2_172734803: i32 = 17799;
const FIX_2_562915447: i32 = 20995;

/// `jpeg_idct_4x4` of jidctred.c (libjpeg-turbo) on a [`Block4x4`] whose compact rows and
/// columns from `USED` on hold only zeros: sixteen pixels, row by row. In 32-bit wrapping
/// arithmetic, as [`idct_2x2`]. libjpeg's shortcuts for all-zero columns and rows give the same
/// values as the full computation, so there are none here (they would be mispredicted
/// branches). The portable one; `avx2::idct_4x4` computes the same pixels.
#[inline(always)]
fn idct_4x4<const USED: usize>(coef: &Block4x4, quant: &[i32; 64]) -> [[u8; 4]; 4] {
    let descale = |x: i32, n: u32| x.wrapping_add(1 << (n - 1)) >> n;
    // One 1-D pass over the seven values 0, 1, 2, 3, 5, 6, 7 of a column or row: the four
    // outputs before descaling.
    let pass = |v: [i32; 7]| {
        let tmp0 = v[0].wrapping_shl(14); // CONST_BITS + 1
        let tmp2 = v[2]
            .wrapping_mul(FIX_1_847759065)
            .wrapping_add(v[5].wrapping_mul(-FIX_0_765366865));
        let (tmp10, tmp12) = (tmp0.wrapping_add(tmp2), tmp0.wrapping_sub(tmp2));
        let (z1, z2, z3, z4) = (v[6], v[4], v[3], v[1]);
        let odd0 = z1
            .wrapping_mul(-FIX_0_211164243)
            .wrapping_add(z2.wrapping_mul(FIX_1_451774981))
            .wrapping_add(z3.wrapping_mul(-FIX_2_172734803))
            .wrapping_add(z4.wrapping_mul(FIX_1_061594337));
        let odd2 = z1
            .wrapping_mul(-FIX_0_509795579)
            .wrapping_add(z2.wrapping_mul(-FIX_0_601344887))
            .wrapping_add(z3.wrapping_mul(FIX_0_899976223))
            .wrapping_add(z4.wrapping_mul(FIX_2_562915447));
        [
            tmp10.wrapping_add(odd2),
            tmp12.wrapping_add(odd0),
            tmp12.wrapping_sub(odd0),
            tmp10.wrapping_sub(odd2),
        ]
    };
    // Pass 1: the seven columns to four rows of work space (CONST_BITS - PASS1_BITS + 1); the
    // caller knows columns from `USED` on to be all zeros, whose work space stays zero.
    let columns: [[i32; 4]; 7] = std::array::from_fn(|col| {
        if col >= USED {
            return [0; 4];
        }
        let v = std::array::from_fn(|row| {
            let at = row * 8 + col;
            i32::from(coef[at]).wrapping_mul(quant[at])
        });
        pass(v).map(|x| descale(x, 12))
    });
    let ws: [[i32; 7]; 4] = std::array::from_fn(|row| columns.map(|column| column[row]));
    // Pass 2: each row to four pixels (CONST_BITS + PASS1_BITS + 3 + 1).
    ws.map(|row| pass(row).map(|x| range_limit(descale(x, 19))))
}

/// libjpeg-turbo's YCbCr to RGB tables (jdcolor.c `build_ycc_rgb_table`, 16 fractional bits),
/// per Cb or Cr value: Cr to red, Cb to blue, and the two scaled-up green terms (Cb's with the
/// rounding half added).
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

static YCC_RGB: YccTables = {
    // FIX(1.40200), FIX(1.77200), FIX(0.71414), FIX(0.34414): round(x * 65536).
    let mut t = YccTables {
        cr_r: [0; 256],
        cb_b: [0; 256],
        cr_g: [0; 256],
        cb_g: [0; 256],
    };
    let mut i = 0;
    while i < 256 {
        let x = i as i32 - 128;
        t.cr_r[i] = (91881 * x + (1 << 15)) >> 16;
        t.cb_b[i] = (116_130 * x + (1 << 15)) >> 16;
        t.cr_g[i] = -46802 * x;
        t.cb_g[i] = -22554 * x + (1 << 15);
        i += 1;
    }
    t
};

/// jdcolext.c's `ycc_rgb_convert` for one pixel.
#[inline(always)]
fn ycc_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let t = &YCC_RGB;
    let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    [
        clamp(y + t.cr_r[cr]),
        clamp(y + ((t.cb_g[cb] + t.cr_g[cr]) >> 16)),
        clamp(y + t.cb_b[cb]),
    ]
}

/// What [`idct_2x2`] computes for a block with only its DC term (common in chroma): its
/// dequantised value (pass 1's factor is the quantiser shifted by 15) descaled by 3, in all
/// four pixels.
#[inline(always)]
fn idct_2x2_dc(dc: i16, factors: &[i32; 64]) -> [u8; 4] {
    let dc = i32::from(dc).wrapping_mul(factors[0] >> 15);
    [range_limit(dc.wrapping_add(4) >> 3); 4]
}

/// Decodes one block's AC terms into `coef` (zeroed by the caller), the value at zigzag
/// position `k` into slot `store[k]` (`N` a power of two, past the slots the IDCT reads for
/// values nobody reads), up to two pairs per lookup; `None` on a bad code, or on a run past
/// position 63 (which libjpeg would clamp). Returns the position after the last value (1: the
/// block has only its DC term).
#[inline(always)]
fn ac_into<const N: usize>(
    table: &Huffman,
    bits: &mut Bits<'_>,
    store: &[u8; 128],
    coef: &mut [i16; N],
) -> Option<u32> {
    let mut k = 1u32;
    loop {
        // Four lookups of at most `PAIRS` bits each per top-up.
        bits.top_up();
        for _ in 0..4 {
            let e = PairEntry::unpack(table.pairs[bits.peek(PAIRS) as usize & (PAIRS_SIZE - 1)]);
            // Both pairs, and the end of block, only while they stay inside the block (a block
            // that reaches 63 has no end-of-block code: those bits are the next DC code).
            if e.used == 0 || k + e.positions + u32::from(e.end_of_block) > 64 {
                bits.refill();
                let sym = u32::from(table.symbol(bits)?);
                let (run, size) = (sym >> 4, sym & 15);
                if ends_block(run, size) {
                    return Some(k);
                }
                k += run;
                if k > 63 {
                    return None;
                }
                let value = extend(bits.get(size), size);
                coef[usize::from(store[k as usize]) & (N - 1)] = value as i16;
                k += 1;
                if k >= 64 {
                    return Some(k);
                }
                break;
            }
            bits.consume(e.used);
            coef[usize::from(store[(k + e.first.0) as usize & 127]) & (N - 1)] = e.first.1;
            coef[usize::from(store[(k + e.second.0) as usize & 127]) & (N - 1)] = e.second.1;
            k += e.positions;
            if e.end_of_block || k >= 64 {
                return Some(k);
            }
        }
    }
}

/// Walks the scan MCU by MCU, left to right and top to bottom, calling `mcu` with the bit
/// reader, the components' DC predictors and the MCU's column and row: checks each restart
/// marker and resets the predictors after it, and gives up (`None`) on a scan that runs out of
/// data, at the start of each MCU row (no point decoding zeros to the end) and at the end.
#[inline(always)]
fn scan(
    data: &mut impl ScanData,
    frame: &Frame,
    mut mcu: impl FnMut(&mut Bits<'_>, &mut [i32; 3], (usize, usize)) -> Option<()>,
) -> Option<()> {
    let mcus_x = frame.width.div_ceil(16) as usize;
    let mcus_y = frame.height.div_ceil(16) as usize;
    let mut state = Bits::new(&[], frame.scan_start).state();
    let mut pred = [0i32; 3];
    let mut restarts = 0u8;
    let interval = frame.restart_interval as usize;
    for index in 0..mcus_x * mcus_y {
        state.0 = data.ensure(state.0);
        let mut bits = Bits::resume(data.bytes(), state);
        if interval > 0 && index > 0 && index % interval == 0 {
            bits.restart(restarts & 7)?;
            restarts = restarts.wrapping_add(1);
            pred = [0; 3];
        }
        let (mx, my) = (index % mcus_x, index / mcus_x);
        if mx == 0 && bits.overrun() {
            return None;
        }
        mcu(&mut bits, &mut pred, (mx, my))?;
        state = bits.state();
    }
    (!Bits::resume(data.bytes(), state).overrun()).then_some(())
}

/// Bytes one MCU can take from the data at most, with the reader's look-ahead: six blocks of
/// at most 64 codes of 16 bits with 15-bit values and an end-of-block code, every byte
/// stuffed (3 KiB), and a restart marker; 8 KiB leaves room.
const MCU_BYTES: usize = 8 << 10;

/// The data [`scan`] reads: all of it in memory (a slice), or a window over a stream
/// ([`Window`]) that moves as the scan goes.
pub(crate) trait ScanData {
    /// The bytes the reader's position points into.
    fn bytes(&self) -> &[u8];
    /// Makes sure at least [`MCU_BYTES`] bytes follow `pos` (or the data ends before), and
    /// returns where `pos` is now (the window may have moved).
    fn ensure(&mut self, pos: usize) -> usize;
}

impl ScanData for &[u8] {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self
    }

    #[inline(always)]
    fn ensure(&mut self, pos: usize) -> usize {
        pos
    }
}

/// A window of [`WINDOW_BYTES`] over a stream: starts with the bytes already read (the
/// headers, up to the scan), and when fewer than [`MCU_BYTES`] are left ahead of the reader,
/// moves them to the front and reads up to the window's size behind them. So a scan streamed
/// through it touches the same 64 KiB however large the file: a fresh process (a new Lambda
/// container) faults in 16 pages for it instead of a page for every 4 KiB of the file.
pub(crate) struct Window<'r> {
    buf: Vec<u8>,
    len: usize,
    /// Reads into the slice, as `Read::read`; 0 at the end of the data (or on an error: the
    /// scan then fails as a truncated one, and the caller knows why).
    read: &'r mut ReadFn<'r>,
    ended: bool,
    /// Bytes the window holds once it has moved ([`WINDOW_BYTES`]; smaller in tests).
    size: usize,
}

/// What a [`Window`] reads with: into the slice, as `Read::read`.
pub(crate) type ReadFn<'r> = dyn FnMut(&mut [u8]) -> usize + 'r;

/// The size of a [`Window`].
pub(crate) const WINDOW_BYTES: usize = 64 << 10;

impl<'r> Window<'r> {
    pub(crate) fn new(head: Vec<u8>, read: &'r mut ReadFn<'r>) -> Self {
        Self::sized(head, read, WINDOW_BYTES)
    }

    /// A window of `size` bytes (at least twice [`MCU_BYTES`]).
    fn sized(head: Vec<u8>, read: &'r mut ReadFn<'r>, size: usize) -> Self {
        let len = head.len();
        let mut buf = head;
        buf.resize(len.max(size), 0);
        Self {
            buf,
            len,
            read,
            ended: false,
            size,
        }
    }

    #[cold]
    #[inline(never)]
    fn slide(&mut self, pos: usize) -> usize {
        let pos = pos.min(self.len);
        self.buf.copy_within(pos..self.len, 0);
        self.len -= pos;
        // A head longer than a window (large metadata) shrinks back to one.
        self.buf.truncate(self.size.max(self.len));
        while self.len < self.buf.len() {
            let n = (self.read)(&mut self.buf[self.len..]);
            if n == 0 {
                self.ended = true;
                break;
            }
            self.len += n.min(self.buf.len() - self.len);
        }
        0
    }
}

impl ScanData for Window<'_> {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[inline(always)]
    fn ensure(&mut self, pos: usize) -> usize {
        if self.ended || self.len.saturating_sub(pos) >= MCU_BYTES {
            pos
        } else {
            self.slide(pos)
        }
    }
}

/// Where the scan's data starts in `head` (the byte after the SOS segment), walking the
/// segments from the start of a JPEG: `Ok(None)` when `head` ends before that, `Err(())` when
/// what is there is not a sequence of JPEG segments.
pub(crate) fn scan_start(head: &[u8]) -> Result<Option<usize>, ()> {
    if !head.starts_with(&[0xFF, 0xD8]) {
        return Err(());
    }
    let mut pos = 2;
    loop {
        match head.get(pos) {
            None => return Ok(None),
            Some(0xFF) => {}
            Some(_) => return Err(()),
        }
        while head.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = head.get(pos) else {
            return Ok(None);
        };
        // Standalone markers have no length (none belongs before the scan but RSTn, TEM).
        if matches!(marker, 0x01 | 0xD0..=0xD9) {
            return Err(());
        }
        let Some(len) = be16(head, pos + 1) else {
            return Ok(None);
        };
        if len < 2 {
            return Err(());
        }
        pos += 1 + len;
        if marker == 0xDA {
            return Ok((pos <= head.len()).then_some(pos));
        }
    }
}

/// [`parse`], refusing a frame whose size is not `size`, the size already checked against the
/// limits: nothing is allocated from an unchecked size.
fn parse_sized(
    data: &[u8],
    size: (u32, u32),
    ac_lookup: fn(&mut Huffman),
) -> Option<(Frame, Tables, Tables)> {
    let parsed = parse(data, ac_lookup)?;
    ((parsed.0.width, parsed.0.height) == size).then_some(parsed)
}

/// Each component's DC and AC table; `None` if the scan names one the file does not define.
fn component_tables<'t>(
    frame: &Frame,
    dc_tables: &'t Tables,
    ac_tables: &'t Tables,
) -> Option<[(&'t Huffman, &'t Huffman); 3]> {
    let table = |c: usize| -> Option<(&'t Huffman, &'t Huffman)> {
        Some((
            dc_tables.get(frame.dc[c])?.as_ref()?,
            ac_tables.get(frame.ac[c])?.as_ref()?,
        ))
    };
    Some([table(0)?, table(1)?, table(2)?])
}

/// One MCU at 1/4 scale, as libjpeg-turbo decodes 4:2:0 at 1/4: the four luma blocks at 2x2
/// (left to right, top to bottom) and the two chroma blocks at 4x4, which is how it scales the
/// chroma up (by its IDCT, so that no upsampling is left): the MCU's 4x4 luma pixels and each
/// chroma plane's 4x4, row by row. Working on a copy of the bit reader, and run from a function
/// that is not inlined ([`Cpu::mcu_quarter`], one per build), so that the reader's state stays
/// in registers (in the MCU loop, with the planes and counters live, the compiler kept it on
/// the stack).
#[inline(always)]
fn mcu_quarter(
    cpu: impl Cpu,
    tables: &McuTables<'_>,
    bits: &mut Bits<'_>,
    pred: &mut [i32; 3],
) -> Option<[[[u8; 4]; 4]; 3]> {
    let mut reader = *bits;
    let mut out = [[[0u8; 4]; 4]; 3];
    let [luma, cb, cr] = &mut out;
    let mut coefs: [Block2x2; 4] = [[0; 64]; 4];
    let mut ends = [0u32; 4];
    for block in 0..4 {
        let (dc_table, ac_table) = tables.huffman[0];
        // libjpeg stores the DC term as a 16-bit coefficient.
        coefs[block][0] = dc(dc_table, &mut reader, &mut pred[0])? as i16;
        ends[block] = ac_into(ac_table, &mut reader, &STORE_2X2, &mut coefs[block])?;
    }
    *luma = cpu.idct_luma(&coefs, &ends, tables.luma_factors);
    for (c, plane) in [cb, cr].into_iter().enumerate() {
        let (dc_table, ac_table) = tables.huffman[c + 1];
        let mut coef: Block4x4 = [0; 64];
        coef[0] = dc(dc_table, &mut reader, &mut pred[c + 1])? as i16;
        let end = ac_into(ac_table, &mut reader, &STORE_4X4, &mut coef)?;
        // Chroma blocks are mostly a few low frequencies: the IDCT skips the rows and columns
        // that the zigzag positions before `end` cannot reach (position 5 is row and column 2
        // at most, 14 row and column 4).
        *plane = match end {
            // DC only: what `idct_4x4` computes then, all pixels alike.
            1 => {
                let dc = i32::from(coef[0]).wrapping_mul(tables.chroma_quant[c][0]);
                [[range_limit(dc.wrapping_add(4) >> 3); 4]; 4]
            }
            2..=6 => cpu.idct_4x4::<3>(&coef, &tables.chroma_quant[c]),
            7..=15 => cpu.idct_4x4::<4>(&coef, &tables.chroma_quant[c]),
            _ => cpu.idct_4x4::<7>(&coef, &tables.chroma_quant[c]),
        };
    }
    *bits = reader;
    Some(out)
}

/// What [`mcu_quarter`] decodes with: each component's DC and AC Huffman tables, the luma
/// IDCT's factors ([`idct_factors`]) and the chroma IDCT's quantisers ([`idct_4x4_quant`]).
struct McuTables<'a> {
    huffman: [(&'a Huffman, &'a Huffman); 3],
    luma_factors: &'a [i32; 64],
    chroma_quant: &'a [[i32; 64]; 2],
}

/// The decoding of one MCU at 1/4 scale as compiled for the CPU it runs on: the portable code,
/// or on x86-64 with AVX2 the same code compiled for it with both IDCTs in vectors ([`avx2`]). Each
/// computes the same pixels; each decode picks the fastest the machine has.
trait Cpu: Copy {
    /// [`mcu_quarter`], compiled for this CPU (and not inlined: see there).
    fn mcu_quarter(
        self,
        tables: &McuTables<'_>,
        bits: &mut Bits<'_>,
        pred: &mut [i32; 3],
    ) -> Option<[[[u8; 4]; 4]; 3]>;

    /// [`idct_2x2`] of an MCU's four luma blocks (left to right, top to bottom; `ends` as
    /// [`ac_into`] returned them): the MCU's 4x4 luma pixels, row by row.
    fn idct_luma(self, coefs: &[Block2x2; 4], ends: &[u32; 4], factors: &[i32; 64])
    -> [[u8; 4]; 4];

    /// [`idct_4x4`].
    fn idct_4x4<const USED: usize>(self, coef: &Block4x4, quant: &[i32; 64]) -> [[u8; 4]; 4];
}

/// The portable code, for any CPU.
#[derive(Clone, Copy)]
struct Portable;

impl Cpu for Portable {
    #[inline(never)]
    fn mcu_quarter(
        self,
        tables: &McuTables<'_>,
        bits: &mut Bits<'_>,
        pred: &mut [i32; 3],
    ) -> Option<[[[u8; 4]; 4]; 3]> {
        mcu_quarter(self, tables, bits, pred)
    }

    #[inline(always)]
    fn idct_luma(
        self,
        coefs: &[Block2x2; 4],
        ends: &[u32; 4],
        factors: &[i32; 64],
    ) -> [[u8; 4]; 4] {
        let mut luma = [[0u8; 4]; 4];
        for block in 0..4 {
            let [a, b, c, d] = if ends[block] == 1 {
                idct_2x2_dc(coefs[block][0], factors)
            } else {
                idct_2x2(&coefs[block], factors)
            };
            let (x, y) = ((block & 1) * 2, (block >> 1) * 2);
            luma[y][x..x + 2].copy_from_slice(&[a, b]);
            luma[y + 1][x..x + 2].copy_from_slice(&[c, d]);
        }
        luma
    }

    #[inline(always)]
    fn idct_4x4<const USED: usize>(self, coef: &Block4x4, quant: &[i32; 64]) -> [[u8; 4]; 4] {
        idct_4x4::<USED>(coef, quant)
    }
}

/// What the 1/4-scale decoders share: the headers parsed (the frame refused unless it is
/// `size`), each component's tables, and the IDCT factors (2x2 for luma, 4x4 for chroma).
struct Quarter {
    frame: Frame,
    dc_tables: Tables,
    ac_tables: Tables,
    luma_factors: [i32; 64],
    chroma_quant: [[i32; 64]; 2],
}

impl Quarter {
    /// `head`: the file up to the scan at least.
    fn parse(head: &[u8], size: (u32, u32)) -> Option<Self> {
        let (frame, dc_tables, ac_tables) = parse_sized(head, size, Huffman::build_pairs)?;
        let luma_factors = idct_factors(&frame.quant[0]);
        let chroma_quant = [
            idct_4x4_quant(&frame.quant[1]),
            idct_4x4_quant(&frame.quant[2]),
        ];
        Some(Self {
            frame,
            dc_tables,
            ac_tables,
            luma_factors,
            chroma_quant,
        })
    }

    /// Scans the data, handing `mcu` each MCU's pixels (see [`mcu_quarter`]) and its column
    /// and row.
    fn scan(
        &self,
        cpu: impl Cpu,
        data: &mut impl ScanData,
        mut mcu: impl FnMut([[[u8; 4]; 4]; 3], (usize, usize)) -> Option<()>,
    ) -> Option<()> {
        let tables = McuTables {
            huffman: component_tables(&self.frame, &self.dc_tables, &self.ac_tables)?,
            luma_factors: &self.luma_factors,
            chroma_quant: &self.chroma_quant,
        };
        scan(data, &self.frame, |bits, pred, at| {
            mcu(cpu.mcu_quarter(&tables, bits, pred)?, at)
        })
    }
}

/// Decodes a 4:2:0 `data` at 1/4 scale to RGB, exactly as libjpeg-turbo does (the tests compare
/// every pixel); `None` when this decoder does not handle the file (see the module docs).
/// `size` as for [`decode`].
fn decode_rgb_quarter(data: &[u8], size: (u32, u32)) -> Option<Raster> {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = avx2::Avx2::detect() {
        return decode_rgb_quarter_on(avx2, data, size);
    }
    decode_rgb_quarter_on(Portable, data, size)
}

fn decode_rgb_quarter_on(cpu: impl Cpu, data: &[u8], size: (u32, u32)) -> Option<Raster> {
    let quarter = Quarter::parse(data, size)?;
    let (width, height) = (
        quarter.frame.width.div_ceil(4) as usize,
        quarter.frame.height.div_ceil(4) as usize,
    );
    let stride = width * 3;
    let mut rgb = vec![0u8; stride.checked_mul(height)?];
    quarter.scan(cpu, &mut { data }, |[luma, cb, cr], (mx, my)| {
        // The MCU's pixels inside the image: the last column and row of MCUs may stick out.
        let (x0, y0) = (mx * 4, my * 4);
        let columns = width.saturating_sub(x0).min(4);
        for dy in 0..height.saturating_sub(y0).min(4) {
            let at = (y0 + dy) * stride + x0 * 3;
            let out = rgb.get_mut(at..at + columns * 3)?;
            for (dx, px) in out.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&ycc_to_rgb(luma[dy][dx], cb[dy][dx], cr[dy][dx]));
            }
        }
        Some(())
    })?;
    Raster::new(width as u32, height as u32, 3, rgb).ok()
}

/// Decodes `data` at 1/4 scale to planes, luma and chroma alike 4x4 pixels per MCU (2x2 per
/// luma block, 4x4 per chroma block: the chroma planes come out the luma plane's size, as
/// libjpeg-turbo's chroma for RGB at 1/4, see [`mcu_quarter`]); `None` when this decoder does
/// not handle the file (see the module docs). `size` as for [`decode`].
fn decode_quarter(data: impl ScanData, size: (u32, u32)) -> Option<Yuv420> {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = avx2::Avx2::detect() {
        return decode_quarter_on(avx2, data, size);
    }
    decode_quarter_on(Portable, data, size)
}

fn decode_quarter_on(cpu: impl Cpu, mut data: impl ScanData, size: (u32, u32)) -> Option<Yuv420> {
    let quarter = Quarter::parse(data.bytes(), size)?;
    let stride = quarter.frame.width.div_ceil(16) as usize * 4;
    let rows = quarter.frame.height.div_ceil(16) as usize * 4;
    let len = stride.checked_mul(rows)?;
    let mut decoded: [Vec<u8>; 3] = std::array::from_fn(|_| vec![0u8; len]);
    quarter.scan(cpu, &mut data, |pixels, (mx, my)| {
        for (plane, block) in decoded.iter_mut().zip(pixels) {
            for (dy, row) in block.into_iter().enumerate() {
                let at = (my * 4 + dy) * stride + mx * 4;
                plane.get_mut(at..at + 4)?.copy_from_slice(&row);
            }
        }
        Some(())
    })?;
    let (width, height) = (
        quarter.frame.width.div_ceil(4),
        quarter.frame.height.div_ceil(4),
    );
    planes((width, height), decoded.map(|plane| (plane, stride)), 1)
}

/// Decodes `data` at 1/8 scale to planes (one pixel per 8x8 block); `None` when this decoder
/// does not handle the file (see the module docs). `size` is the width and height already
/// checked against the limits: a frame header saying anything else is refused, so nothing here
/// is allocated from an unchecked size.
fn decode_eighth(mut data: impl ScanData, size: (u32, u32)) -> Option<Yuv420> {
    let (frame, dc_tables, ac_tables) = parse_sized(data.bytes(), size, Huffman::build_skip)?;
    // One pixel per block: the luma plane has two per MCU each way, the chroma planes one.
    let mcus_x = frame.width.div_ceil(16) as usize;
    let mcus_y = frame.height.div_ceil(16) as usize;
    let (yw, yh) = (mcus_x * 2, mcus_y * 2);
    let mut y_plane = vec![0u8; yw.checked_mul(yh)?];
    let mut cb_plane = vec![0u8; mcus_x.checked_mul(mcus_y)?];
    let mut cr_plane = vec![0u8; mcus_x.checked_mul(mcus_y)?];

    let tables = component_tables(&frame, &dc_tables, &ac_tables)?;
    let q0 = frame.quant.map(|q| i64::from(q[0]));
    scan(&mut data, &frame, |bits, pred, (mx, my)| {
        // Four luma blocks (left to right, top to bottom), then Cb, then Cr.
        for block in 0..6usize {
            let c = block.saturating_sub(3);
            let (dc_table, ac_table) = tables[c];
            let dc_value = dc(dc_table, bits, &mut pred[c])?;
            skip_ac(ac_table, bits)?;
            // libjpeg's 1x1 IDCT: DESCALE(dc * q, 3) + 128, clamped.
            let v = (((i64::from(dc_value) * q0[c] + 4) >> 3) + 128).clamp(0, 255) as u8;
            let px = match block {
                0..=3 => y_plane.get_mut((my * 2 + (block >> 1)) * yw + mx * 2 + (block & 1)),
                4 => cb_plane.get_mut(my * mcus_x + mx),
                _ => cr_plane.get_mut(my * mcus_x + mx),
            };
            *px? = v;
        }
        Some(())
    })?;
    planes(
        (frame.width.div_ceil(8), frame.height.div_ceil(8)),
        [(y_plane, yw), (cb_plane, mcus_x), (cr_plane, mcus_x)],
        2,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use turbojpeg::{Decompressor, ScalingFactor, Subsamp, YuvImage};

    /// A textured test image: gradients, edges and deterministic noise, so blocks have plenty
    /// of AC terms (long codes, big values).
    fn photo(w: u32, h: u32) -> Vec<u8> {
        let mut seed = 0x1234_5678u32;
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let noise = (seed % 48) as i32 - 24;
                let edge = if (x / 7 + y / 5) % 3 == 0 { 90 } else { 0 };
                let base = [x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)];
                for c in base {
                    v.push((c as i32 + noise + edge).clamp(0, 255) as u8);
                }
            }
        }
        v
    }

    fn turbo(w: u32, h: u32, quality: i32) -> Vec<u8> {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(quality).unwrap();
        c.set_subsamp(Subsamp::Sub2x2).unwrap();
        let px = photo(w, h);
        c.compress_to_vec(turbojpeg::Image {
            pixels: px.as_slice(),
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap()
    }

    fn rust_encoded(
        w: u16,
        h: u16,
        quality: u8,
        sampling: jpeg_encoder::SamplingFactor,
        restart: u16,
        optimize: bool,
        progressive: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut out, quality);
        e.set_sampling_factor(sampling);
        e.set_restart_interval(restart);
        e.set_optimized_huffman_tables(optimize);
        e.set_progressive(progressive);
        e.encode(
            &photo(u32::from(w), u32::from(h)),
            w,
            h,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
        out
    }

    fn header_size(jpeg: &[u8]) -> (u32, u32) {
        let h = turbojpeg::read_header(jpeg).unwrap();
        (h.width as u32, h.height as u32)
    }

    /// libjpeg-turbo's planes at the same scale.
    fn reference(jpeg: &[u8], denominator: usize) -> Yuv420 {
        let mut d = Decompressor::new().unwrap();
        let header = d.read_header(jpeg).unwrap();
        let factor = ScalingFactor::new(1, denominator);
        d.set_scaling_factor(factor).unwrap();
        let s = header.scaled(factor);
        let len = turbojpeg::yuv_pixels_len(s.width, 1, s.height, Subsamp::Sub2x2).unwrap();
        let mut px = vec![0u8; len];
        d.decompress_to_yuv(
            jpeg,
            YuvImage {
                pixels: px.as_mut_slice(),
                width: s.width,
                align: 1,
                height: s.height,
                subsamp: Subsamp::Sub2x2,
            },
        )
        .unwrap();
        Yuv420::from_packed(s.width as u32, s.height as u32, px).unwrap()
    }

    /// Largest difference between two planes over the first `w`x`h` pixels.
    fn max_diff(ours: &Raster, theirs: &Raster, w: u32, h: u32) -> u8 {
        let mut m = 0;
        for y in 0..h as usize {
            for x in 0..w as usize {
                let a = ours.data[y * ours.width as usize + x];
                let b = theirs.data[y * theirs.width as usize + x];
                m = m.max(a.abs_diff(b));
            }
        }
        m
    }

    /// Our planes against libjpeg-turbo's, bit for bit, over the image (not the padding).
    fn compare(jpeg: &[u8], what: &str) {
        compare_at(jpeg, 8, what);
        compare_at(jpeg, 4, what);
        compare_rgb(jpeg, what);
    }

    /// The RGB decoder against libjpeg-turbo's RGB at 1/4, pixel for pixel.
    fn compare_rgb(jpeg: &[u8], what: &str) {
        let ours =
            decode_rgb_quarter(jpeg, header_size(jpeg)).unwrap_or_else(|| panic!("{what} RGB"));
        let mut d = Decompressor::new().unwrap();
        let header = d.read_header(jpeg).unwrap();
        let factor = ScalingFactor::new(1, 4);
        d.set_scaling_factor(factor).unwrap();
        let s = header.scaled(factor);
        let mut px = vec![0u8; s.width * s.height * 3];
        d.decompress(
            jpeg,
            turbojpeg::Image {
                pixels: px.as_mut_slice(),
                width: s.width,
                pitch: s.width * 3,
                height: s.height,
                format: turbojpeg::PixelFormat::RGB,
            },
        )
        .unwrap();
        assert_eq!(
            (ours.width as usize, ours.height as usize, ours.channels),
            (s.width, s.height, 3),
            "{what} RGB"
        );
        let diff = ours.data.iter().zip(&px).position(|(a, b)| a != b);
        assert_eq!(diff, None, "{what} RGB: first difference at byte {diff:?}");
    }

    fn compare_at(jpeg: &[u8], denominator: usize, what: &str) {
        let what = format!("{what} at 1/{denominator}");
        let ours = decode(jpeg, header_size(jpeg), denominator).unwrap_or_else(|| panic!("{what}"));
        let theirs = reference(jpeg, denominator);
        assert_eq!(
            (ours.width, ours.height),
            (theirs.width, theirs.height),
            "{what}"
        );
        // The whole planes when the size is even (the resampler reads past the image's edge), the
        // image alone when it is odd (see `planes`).
        let (w, h) = (theirs.width, theirs.height);
        assert_eq!(
            (ours.y.width, ours.y.height),
            (theirs.y.width, theirs.y.height),
            "{what} Y"
        );
        let d = max_diff(&ours.y, &theirs.y, w, h);
        assert_eq!(d, 0, "{what} Y: off by {d}");
        // At 1/8 the chroma planes are 4:2:0's half size, as libjpeg-turbo's planes at 1/8. At 1/4
        // they are the luma plane's size, from the 4x4 IDCT: what libjpeg-turbo's chroma planes
        // at 1/2 hold (there every block takes the 4x4 IDCT).
        let (chroma, (cw, ch)) = if denominator == 4 {
            assert_eq!(ours.chroma_step, 1, "{what}");
            (reference(jpeg, 2), (w, h))
        } else {
            assert_eq!(ours.chroma_step, 2, "{what}");
            (theirs, (w.div_ceil(2), h.div_ceil(2)))
        };
        for (name, a, b) in [("Cb", &ours.cb, &chroma.cb), ("Cr", &ours.cr, &chroma.cr)] {
            let size = (a.width, a.height);
            if denominator == 4 {
                assert_eq!(size, (ours.y.width, ours.y.height), "{what} {name}");
            } else {
                assert_eq!(size, (b.width, b.height), "{what} {name}");
            }
            let d = max_diff(a, b, cw, ch);
            assert_eq!(d, 0, "{what} {name}: off by {d}");
        }
    }

    #[test]
    fn matches_libjpeg_turbo() {
        for (w, h) in [
            (64, 48),
            (61, 37),
            (250, 170),
            (16, 16),
            (17, 9),
            (8, 8),
            (1, 1),
        ] {
            for q in [30, 75, 95, 100] {
                compare(&turbo(w, h, q), &format!("libjpeg-turbo {w}x{h} q{q}"));
            }
        }
    }

    /// The tests above take the AVX2 build where the CPU has it; the portable one decodes the
    /// same.
    #[test]
    fn the_portable_build_decodes_the_same() {
        for (w, h) in [(64, 48), (61, 37), (250, 170)] {
            for q in [30, 95, 100] {
                let jpeg = turbo(w, h, q);
                let size = header_size(&jpeg);
                assert_eq!(
                    decode_quarter_on(Portable, &jpeg[..], size),
                    decode_quarter(&jpeg[..], size),
                    "{w}x{h} q{q} planes"
                );
                assert_eq!(
                    decode_rgb_quarter_on(Portable, &jpeg, size),
                    decode_rgb_quarter(&jpeg, size),
                    "{w}x{h} q{q} RGB"
                );
            }
        }
    }

    #[test]
    fn restart_markers() {
        use jpeg_encoder::SamplingFactor::R_4_2_0;
        for restart in [0, 1, 2, 5] {
            for (w, h) in [(96, 64), (83, 45)] {
                let jpeg = rust_encoded(w, h, 90, R_4_2_0, restart, false, false);
                compare(&jpeg, &format!("{w}x{h} restart {restart}"));
            }
        }
    }

    #[test]
    fn other_kinds_are_left_to_libjpeg() {
        use jpeg_encoder::SamplingFactor::{R_4_2_0, R_4_2_2, R_4_4_4};
        for jpeg in [
            rust_encoded(64, 48, 90, R_4_4_4, 0, false, false),
            rust_encoded(64, 48, 90, R_4_2_2, 0, false, false),
            rust_encoded(64, 48, 90, R_4_2_0, 0, false, true),
            // jpeg-encoder writes one scan per component when it optimises its tables.
            rust_encoded(64, 48, 90, R_4_2_0, 0, true, false),
        ] {
            assert!(decode(jpeg.as_slice(), (64, 48), 8).is_none());
            assert!(decode(jpeg.as_slice(), (64, 48), 4).is_none());
            assert!(decode_rgb_quarter(&jpeg, (64, 48)).is_none());
        }
        let jpeg = turbo(64, 48, 90);
        assert!(decode(jpeg.as_slice(), (64, 48), 8).is_some());
        assert!(decode(jpeg.as_slice(), (64, 48), 4).is_some());
        // A size other than the checked one is refused, and so are the scales left to
        // libjpeg-turbo.
        assert!(decode(jpeg.as_slice(), (64, 47), 8).is_none());
        assert!(decode(jpeg.as_slice(), (64, 47), 4).is_none());
        assert!(decode(jpeg.as_slice(), (64, 48), 2).is_none());
    }

    #[test]
    fn truncated_scans_are_left_to_libjpeg() {
        let jpeg = turbo(128, 96, 90);
        // Cut inside the entropy-coded data: never a made-up image.
        for cut in (jpeg.len() / 3..jpeg.len() - 40).step_by(53) {
            assert!(decode(&jpeg[..cut], (128, 96), 8).is_none(), "cut at {cut}");
            assert!(decode(&jpeg[..cut], (128, 96), 4).is_none(), "cut at {cut}");
            assert!(
                decode_rgb_quarter(&jpeg[..cut], (128, 96)).is_none(),
                "cut at {cut}"
            );
        }
    }

    /// `data` as a [`Window`] of `size` bytes over a stream that hands out 1 to 97 bytes a
    /// read, its head cut anywhere (as `transform_streamed` never does: the tests ask for more).
    fn trickled(data: &[u8], size: usize) -> Window<'static> {
        let head = data.len().min(size / 3);
        let mut at = head;
        let rest = data.to_vec();
        let mut piece = 0;
        let read: Box<ReadFn<'static>> = Box::new(move |buf: &mut [u8]| {
            piece = piece % 97 + 1;
            let n = piece.min(buf.len()).min(rest.len() - at);
            buf[..n].copy_from_slice(&rest[at..at + n]);
            at += n;
            n
        });
        Window::sized(data[..head].to_vec(), Box::leak(read), size)
    }

    #[test]
    fn a_window_decodes_as_the_whole_data() {
        // Large enough for the window to move many times, with and without restart markers.
        for jpeg in [
            turbo(640, 480, 95),
            rust_encoded(
                640,
                480,
                95,
                jpeg_encoder::SamplingFactor::R_4_2_0,
                3,
                false,
                false,
            ),
        ] {
            assert!(jpeg.len() > 8 * MCU_BYTES, "{} bytes", jpeg.len());
            for denominator in [8, 4] {
                let whole = decode(jpeg.as_slice(), (640, 480), denominator);
                assert!(whole.is_some());
                assert_eq!(
                    decode(trickled(&jpeg, 2 * MCU_BYTES), (640, 480), denominator),
                    whole
                );
            }
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let sources = [
            turbo(96, 80, 85),
            rust_encoded(
                96,
                80,
                85,
                jpeg_encoder::SamplingFactor::R_4_2_0,
                2,
                false,
                false,
            ),
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for src in &sources {
            for n in 0..src.len() {
                let _ = decode(&src[..n], (96, 80), 8);
                let _ = decode(&src[..n], (96, 80), 4);
                let _ = decode_rgb_quarter(&src[..n], (96, 80));
            }
            for case in 0..600 {
                let mut m = src.clone();
                for _ in 0..1 + next() % 6 {
                    let at = if case % 2 == 0 {
                        (next() % 700) as usize % m.len()
                    } else {
                        (next() as usize) % m.len()
                    };
                    m[at] = next() as u8;
                }
                let _ = decode(m.as_slice(), (96, 80), 8);
                let _ = decode(m.as_slice(), (96, 80), 4);
                let _ = decode_rgb_quarter(&m, (96, 80));
                // Streamed in small pieces through a small window: what the whole gives.
                for denominator in [8, 4] {
                    assert_eq!(
                        decode(trickled(&m, 2 * MCU_BYTES), (96, 80), denominator),
                        decode(m.as_slice(), (96, 80), denominator),
                        "case {case} at 1/{denominator}"
                    );
                }
            }
        }
    }

    /// The code at the top of `buf` by the canonical rule (F.2.2.3), bit by bit: its length
    /// and symbol, `None` for a code longer than the one-code lookup.
    fn one_code(table: &Huffman, buf: u64) -> Option<(u32, u32)> {
        (1..=LOOKUP).find_map(|len| {
            let code = (buf >> (64 - len)) as i32;
            (code <= table.max_code[len as usize]).then(|| {
                let at = (code + table.offset[len as usize]) as usize;
                (len, u32::from(table.symbols[at]))
            })
        })
    }

    /// Each pair entry against decoding one pair at a time by the canonical rule (F.2.2.3),
    /// values included, on the AC tables of a real file, and packing against unpacking.
    #[test]
    fn pair_entries_match_one_pair_at_a_time() {
        let jpeg = turbo(64, 48, 95);
        let (_, _, ac_tables) = parse(&jpeg, Huffman::build_pairs).unwrap();
        for table in ac_tables.iter().flatten() {
            for window in 0..PAIRS_SIZE as u64 {
                let mut expected = PairEntry::default();
                let mut pairs = 0;
                let mut buf = window << (64 - PAIRS);
                while let Some((len, sym)) = one_code(table, buf) {
                    let (run, size) = (sym >> 4, sym & 15);
                    if expected.used + len + size > PAIRS {
                        break;
                    }
                    if ends_block(run, size) {
                        expected.used += len;
                        expected.end_of_block = true;
                        break;
                    }
                    let raw = (buf << len).checked_shr(64 - size).unwrap_or(0) as u32;
                    let value = extend(raw, size) as i16;
                    if pairs == 0 {
                        expected.first = (run, value);
                    } else {
                        expected.second = (expected.positions + run, value);
                    }
                    expected.used += len + size;
                    expected.positions += run + 1;
                    buf <<= len + size;
                    pairs += 1;
                    if pairs == 2 {
                        break;
                    }
                }
                if pairs < 2 {
                    expected.second = (expected.positions, 0);
                }
                let packed = table.pairs[window as usize];
                if expected.used == 0 {
                    assert_eq!(packed, 0, "window {window:b}");
                } else {
                    assert_eq!(PairEntry::unpack(packed), expected, "window {window:b}");
                }
            }
        }
    }

    /// Each skip entry against the one-code-at-a-time lookup, on the AC tables of a real file.
    #[test]
    fn skip_entries_match_one_code_at_a_time() {
        let jpeg = turbo(64, 48, 95);
        let (_, _, ac_tables) = parse(&jpeg, Huffman::build_skip).unwrap();
        for table in ac_tables.iter().flatten() {
            for window in 0..SKIP_SIZE as u64 {
                let entry = u32::from(table.skip[window as usize]);
                let (mut used, mut positions, mut eob) = (0u32, 0u32, false);
                let mut buf = window << (64 - SKIP);
                // One code at a time, by the canonical rule (F.2.2.3), bit by bit; codes longer
                // than the one-code lookup end an entry.
                while let Some((len, sym)) = one_code(table, buf) {
                    let (run, size) = (sym >> 4, sym & 15);
                    if used + len + size > SKIP {
                        break;
                    }
                    if ends_block(run, size) {
                        used += len;
                        eob = true;
                        break;
                    }
                    if positions + run + 1 > 63 {
                        break;
                    }
                    used += len + size;
                    positions += run + 1;
                    buf <<= len + size;
                }
                assert_eq!(
                    (entry & 15, (entry >> 4) & 63, entry >> 10 != 0),
                    (used, positions, eob),
                    "window {window:b}"
                );
            }
        }
    }

    #[test]
    fn huffman_tables_reject_oversubscribed_codes() {
        // Three 1-bit codes cannot exist.
        let mut counts = [0u8; 16];
        counts[0] = 3;
        assert!(Huffman::new(&counts, &[1, 2, 3]).is_none());
        // Counts asking for more symbols than given.
        counts[0] = 2;
        assert!(Huffman::new(&counts, &[1]).is_none());
    }
}
