//! INT8 matrix products: weights stored once as signed 8-bit integers with one scale per output
//! column, activations quantised per row at every product (asymmetric, unsigned 8-bit: a scale
//! and a zero point per row), products accumulated exactly in i32, and an f32 epilogue that
//! removes the zero point's share and applies both scales. Opt-in per stage
//! (`precision = "int8"`): the rounding changes results, so its retrieval effect is reported in
//! BENCHMARKS.md.
//!
//! The arithmetic, for activations `x ≈ sx·(qx − zx)` and weights `W ≈ sw·qw`:
//!
//! ```text
//! y[i][j] = sx[i] · sw[j] · (Σk qx[i][k]·qw[k][j] − zx[i] · Σk qw[k][j])
//! ```
//!
//! The column sums `Σk qw[k][j]` are computed once at load. On CPUs with AVX512-VNNI the inner
//! sum is `vpdpbusd` (u8 × i8, four products per 32-bit lane, 64 multiply-adds per
//! instruction, four times the f32 FMA rate); elsewhere a portable kernel computes the same
//! integers, so both give bit-identical results (tested).
//!
//! **Weights already INT8 at their source** (the CrossEncoder ships as a dynamic-INT8 ONNX file,
//! dequantised to f32 by the fetch script as `q · scale`, one scale per tensor): a weight block
//! whose values all lie on the grid `max|W| / 127 · {−127 … 127}` is stored on that grid, which
//! reproduces the source model's integers exactly instead of re-quantising them per column.
//! Other blocks get one symmetric scale per column (`max|W[:, j]| / 127`).

use gemm::Parallelism;
use rayon::prelude::*;

/// Output columns per panel: one 512-bit register of i32.
const LANES: usize = 16;
/// Rows per micro-tile.
const ROWS: usize = 8;
/// Rows of activations quantised and kept hot while every panel passes over them.
const ROW_CHUNK: usize = 128;
/// How far (in grid steps) a value may sit from the source grid and still count as on it: the
/// fetch script's `q · scale` in f32 lands within a few ulps of the grid point.
const GRID_TOLERANCE: f32 = 1e-3;

/// Set by [`Int8Kernel::force_portable`].
static PORTABLE_REQUESTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Which integer kernel runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// `vpdpbusd` on 512-bit registers (AVX512-VNNI).
    Vnni512,
    /// Plain Rust over the same layout (any CPU): the fallback.
    Portable,
}

impl Int8Kernel {
    /// The fastest kernel this CPU runs, or the fallback after [`Self::force_portable`].
    /// Decided once per process: every product asks.
    pub fn detect() -> Self {
        static KERNEL: std::sync::OnceLock<Int8Kernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| {
            if PORTABLE_REQUESTED.load(std::sync::atomic::Ordering::Relaxed) {
                Int8Kernel::Portable
            } else if vnni512_supported() {
                Int8Kernel::Vnni512
            } else {
                Int8Kernel::Portable
            }
        })
    }

    /// Makes [`Self::detect`] choose the fallback (to compare, or to test the dispatch on a CPU
    /// that has VNNI): the binary calls it at start-up for `EMBED_COLLECTIONS_INT8_KERNEL=portable`
    /// (read by `config::Environment`), before any product runs.
    pub fn force_portable() {
        PORTABLE_REQUESTED.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Vnni512 => "avx512-vnni",
            Int8Kernel::Portable => "portable",
        }
    }
}

/// Whether this CPU has AVX512-VNNI (with the AVX-512 foundation the kernel also uses).
pub fn vnni512_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How a weight matrix's scales were chosen, counted per block for the load log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridReport {
    /// Column blocks found on an INT8 grid (stored exactly).
    pub source_blocks: usize,
    /// Column blocks quantised with one scale per column.
    pub per_column_blocks: usize,
}

/// A [k, n] weight matrix in the operand layout of `vpdpbusd`: for each 16-column panel and each
/// quad of rows (4q … 4q + 3), 16 lanes of four i8 (W[4q + b][j] in byte b). k is padded to a
/// multiple of 4 and n to a multiple of 16 with zeros.
pub struct Int8Matrix {
    panels: Vec<i32>,
    /// Per output column (padded): the weight scale and Σk qw[k][j].
    scales: Vec<f32>,
    sums: Vec<i32>,
    k: usize,
    n: usize,
    quads: usize,
    grid: GridReport,
}

impl Int8Matrix {
    /// From a row-major [k, n] f32 matrix whose columns are the concatenation of blocks of the
    /// given widths (a fused Q/K/V projection is three blocks; they were separate tensors at
    /// their source, each with its own grid). `blocks` empty: one block of all n columns.
    pub fn new(values: &[f32], k: usize, n: usize, blocks: &[usize]) -> Self {
        assert_eq!(values.len(), k * n, "weights are not {k}×{n}");
        let whole = [n];
        let blocks = if blocks.is_empty() {
            &whole[..]
        } else {
            blocks
        };
        assert_eq!(
            blocks.iter().sum::<usize>(),
            n,
            "blocks do not cover the columns"
        );
        let padded = n.div_ceil(LANES) * LANES;
        let mut scales = vec![1f32; padded];
        let mut grid = GridReport::default();
        let mut first = 0;
        for &width in blocks {
            let columns = first..first + width;
            let block_max = columns
                .clone()
                .flat_map(|j| (0..k).map(move |r| values[r * n + j].abs()))
                .fold(0f32, f32::max);
            let source = block_max / 127.0;
            let on_grid = source > 0.0
                && columns.clone().all(|j| {
                    (0..k).all(|r| {
                        let q = values[r * n + j] / source;
                        (q - q.round()).abs() <= GRID_TOLERANCE
                    })
                });
            if on_grid {
                grid.source_blocks += 1;
                scales[columns.clone()].fill(source);
            } else {
                grid.per_column_blocks += 1;
                for j in columns.clone() {
                    let column_max = (0..k).map(|r| values[r * n + j].abs()).fold(0f32, f32::max);
                    scales[j] = if column_max > 0.0 {
                        column_max / 127.0
                    } else {
                        1.0
                    };
                }
            }
            first += width;
        }
        let quads = k.div_ceil(4);
        let panel_count = padded / LANES;
        let mut panels = vec![0i32; panel_count * quads * LANES];
        let mut sums = vec![0i32; padded];
        let quantised = |row: usize, col: usize| -> i8 {
            if row < k && col < n {
                (values[row * n + col] / scales[col])
                    .round()
                    .clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        };
        for panel in 0..panel_count {
            for quad in 0..quads {
                for lane in 0..LANES {
                    let col = panel * LANES + lane;
                    let mut bytes = [0u8; 4];
                    for (b, byte) in bytes.iter_mut().enumerate() {
                        let q = quantised(4 * quad + b, col);
                        sums[col] += i32::from(q);
                        *byte = q as u8;
                    }
                    panels[(panel * quads + quad) * LANES + lane] = i32::from_le_bytes(bytes);
                }
            }
        }
        Self {
            panels,
            scales,
            sums,
            k,
            n,
            quads,
            grid,
        }
    }

    pub fn grid(&self) -> GridReport {
        self.grid
    }

    /// The weight as stored, dequantised (`scale · q`): what the products multiply by.
    pub fn dequantised(&self, row: usize, col: usize) -> f32 {
        let (panel, lane) = (col / LANES, col % LANES);
        let word = self.panels[(panel * self.quads + row / 4) * LANES + lane];
        let q = word.to_le_bytes()[row % 4] as i8;
        f32::from(q) * self.scales[col]
    }

    /// `out[m, n] = x[m, k] · W` (rows of `out` `out_stride` apart) with the best kernel;
    /// with `Parallelism::Rayon` the chunks of rows run on the pool.
    pub fn matmul(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        out_stride: usize,
        parallelism: Parallelism,
    ) {
        let kernel = Int8Kernel::detect();
        match parallelism {
            Parallelism::Rayon(threads) if threads > 1 && m > ROW_CHUNK => {
                assert!(x.len() >= m * self.k, "lhs too short");
                assert!(
                    out.len() >= (m - 1) * out_stride + self.n,
                    "output too short"
                );
                out.par_chunks_mut(ROW_CHUNK * out_stride)
                    .zip(x[..m * self.k].par_chunks(ROW_CHUNK * self.k))
                    .for_each(|(out, x)| {
                        let rows = x.len() / self.k;
                        self.matmul_with(kernel, x, rows, out, out_stride)
                    });
            }
            _ => self.matmul_with(kernel, x, m, out, out_stride),
        }
    }

    /// As [`Self::matmul`] with a chosen kernel; `Vnni512` on a CPU without it panics (a
    /// programming error: callers take [`Int8Kernel::detect`]).
    pub fn matmul_with(
        &self,
        kernel: Int8Kernel,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        out_stride: usize,
    ) {
        assert!(x.len() >= m * self.k, "lhs too short");
        assert!(
            m == 0 || out.len() >= (m - 1) * out_stride + self.n,
            "output too short"
        );
        assert!(
            kernel != Int8Kernel::Vnni512 || vnni512_supported(),
            "the VNNI kernel needs AVX512-VNNI"
        );
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.fit(self.quads);
            let Scratch {
                tiles,
                bytes,
                scales,
                zeros,
            } = scratch;
            for first in (0..m).step_by(ROW_CHUNK) {
                let rows = ROW_CHUNK.min(m - first);
                let rows_x = &x[first * self.k..(first + rows) * self.k];
                quantise_rows(
                    kernel, rows_x, self.k, self.quads, rows, tiles, bytes, scales, zeros,
                );
                let chunk = Chunk {
                    tiles,
                    scales,
                    zeros,
                    first,
                    rows,
                };
                match kernel {
                    Int8Kernel::Vnni512 => {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: the CPU features were checked on entry; every index is checked
                        // against its slice inside.
                        unsafe {
                            vnni::chunk(self, &chunk, out, out_stride)
                        }
                    }
                    Int8Kernel::Portable => portable_chunk(self, &chunk, out, out_stride),
                }
            }
        });
    }
}

/// Quantises `rows` rows of `x` ([rows, k]) into the tile layout: for each tile of ROWS rows
/// and each quad p, the ROWS rows' quads side by side (one broadcast each, sharing a cache
/// line). Each row's range includes 0, so its zero point is an exact integer in 0..=255. It
/// runs once per product over every activation, so the two per-row loops have AVX-512 builds
/// ([`vnni::row_range`], [`vnni::row_bytes`]) giving the same values as the portable ones.
#[allow(clippy::too_many_arguments)]
fn quantise_rows(
    kernel: Int8Kernel,
    x: &[f32],
    k: usize,
    quads: usize,
    rows: usize,
    tiles: &mut [u32],
    bytes: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [i32],
) {
    // Neither buffer is cleared: the last quad's padding bytes meet zero weights, and the rows
    // of a partial last tile are computed but never stored.
    let bytes = &mut bytes[..quads * 4];
    for r in 0..rows {
        let row = &x[r * k..(r + 1) * k];
        let (low, high) = match kernel {
            // SAFETY: the VNNI kernel is only chosen on a CPU with AVX512-VNNI (checked on
            // entry to the product), which has AVX512F.
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Vnni512 => unsafe { vnni::row_range(row) },
            _ => row_range(row),
        };
        let scale = if high > low {
            (high - low) / 255.0
        } else {
            1.0
        };
        let zero = round_to_byte(-low / scale);
        scales[r] = scale;
        zeros[r] = i32::from(zero);
        let (inverse, zero) = (1.0 / scale, f32::from(zero));
        match kernel {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Vnni512 => unsafe { vnni::row_bytes(row, inverse, zero, bytes) },
            _ => row_bytes(row, inverse, zero, bytes),
        }
        let (tile, lane) = (r / ROWS, r % ROWS);
        let base = tile * quads * ROWS + lane;
        for (quad, word) in bytes.chunks_exact(4).enumerate() {
            tiles[base + quad * ROWS] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
    }
}

/// (min(row, 0), max(row, 0)).
fn row_range(row: &[f32]) -> (f32, f32) {
    row.iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `bytes[i] = round_to_byte(row[i] · inverse + zero)`.
fn row_bytes(row: &[f32], inverse: f32, zero: f32, bytes: &mut [u8]) {
    for (byte, &v) in bytes.iter_mut().zip(row) {
        *byte = round_to_byte(v * inverse + zero);
    }
}

/// Clamps to 0..=255, then rounds to nearest, ties to even (as `vcvtps2dq` does).
fn round_to_byte(v: f32) -> u8 {
    // Adding 1.5·2²³ rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    (v.clamp(0.0, 255.0) + MAGIC).to_bits() as u8
}

/// The quantised activations of one chunk, kept per thread across products (allocating and
/// zeroing them per product cost 7 % of a CrossEncoder run).
#[derive(Default)]
struct Scratch {
    tiles: Vec<u32>,
    bytes: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl Scratch {
    fn fit(&mut self, quads: usize) {
        let grow = |len: usize, current: usize| len.max(current);
        self.tiles
            .resize(grow(ROW_CHUNK * quads, self.tiles.len()), 0);
        self.bytes.resize(grow(4 * quads, self.bytes.len()), 0);
        self.scales.resize(ROW_CHUNK, 0.0);
        self.zeros.resize(ROW_CHUNK, 0);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// One chunk of quantised activation rows.
struct Chunk<'a> {
    tiles: &'a [u32],
    scales: &'a [f32],
    zeros: &'a [i32],
    /// Index of the chunk's first row in the product.
    first: usize,
    rows: usize,
}

/// The epilogue both kernels share, one value: `sx · sw · (acc − zx · Σ qw)`. The scale product
/// is formed first so that the vector kernel, which does the same, rounds identically.
#[inline(always)]
fn dequantise(acc: i32, zero: i32, column_sum: i32, row_scale: f32, column_scale: f32) -> f32 {
    (acc - zero * column_sum) as f32 * (column_scale * row_scale)
}

/// The fallback: the same integer sums in plain Rust.
fn portable_chunk(w: &Int8Matrix, chunk: &Chunk<'_>, out: &mut [f32], out_stride: usize) {
    let panel_count = w.n.div_ceil(LANES);
    for r in 0..chunk.rows {
        let (tile, lane) = (r / ROWS, r % ROWS);
        let xs = &chunk.tiles[tile * w.quads * ROWS..];
        let row_out = (chunk.first + r) * out_stride;
        for panel in 0..panel_count {
            let mut acc = [0i32; LANES];
            for quad in 0..w.quads {
                let x = xs[quad * ROWS + lane].to_le_bytes();
                let weights = &w.panels[(panel * w.quads + quad) * LANES..][..LANES];
                for (a, word) in acc.iter_mut().zip(weights) {
                    let q = word.to_le_bytes();
                    for b in 0..4 {
                        *a += i32::from(x[b]) * i32::from(q[b] as i8);
                    }
                }
            }
            for (l, &a) in acc.iter().enumerate() {
                let col = panel * LANES + l;
                if col < w.n {
                    out[row_out + col] = dequantise(
                        a,
                        chunk.zeros[r],
                        w.sums[col],
                        chunk.scales[r],
                        w.scales[col],
                    );
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Chunk, Int8Matrix, LANES, ROWS};
    use std::arch::x86_64::*;

    /// (min(row, 0), max(row, 0)) on 16 lanes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row_range(row: &[f32]) -> (f32, f32) {
        let mut low = _mm512_setzero_ps();
        let mut high = _mm512_setzero_ps();
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            let v = _mm512_loadu_ps(chunk.as_ptr());
            low = _mm512_min_ps(low, v);
            high = _mm512_max_ps(high, v);
        }
        let (lo, hi) = super::row_range(chunks.remainder());
        (
            _mm512_reduce_min_ps(low).min(lo),
            _mm512_reduce_max_ps(high).max(hi),
        )
    }

    /// [`super::row_bytes`] on 16 lanes: the same multiply, add, clamp and round-to-even.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row_bytes(row: &[f32], inverse: f32, zero: f32, bytes: &mut [u8]) {
        assert!(bytes.len() >= row.len());
        let (inv, z) = (_mm512_set1_ps(inverse), _mm512_set1_ps(zero));
        let (floor, ceiling) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let mut chunks = row.chunks_exact(LANES);
        let mut at = 0;
        for chunk in &mut chunks {
            let v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), inv), z);
            let clamped = _mm512_min_ps(_mm512_max_ps(v, floor), ceiling);
            let q = _mm512_cvtps_epi32(clamped);
            _mm_storeu_si128(
                bytes.as_mut_ptr().add(at) as *mut __m128i,
                _mm512_cvtepi32_epi8(q),
            );
            at += LANES;
        }
        super::row_bytes(chunks.remainder(), inverse, zero, &mut bytes[at..]);
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn chunk(w: &Int8Matrix, chunk: &Chunk<'_>, out: &mut [f32], stride: usize) {
        let panel_count = w.n.div_ceil(LANES);
        let mut panel = 0;
        while panel < panel_count {
            let group = (panel_count - panel).min(3);
            let mut r = 0;
            while r < chunk.rows {
                let tile_rows = ROWS.min(chunk.rows - r);
                let tile = r / ROWS;
                let xs = &chunk.tiles[tile * w.quads * ROWS..(tile + 1) * w.quads * ROWS];
                let target = Target {
                    row: r,
                    rows: tile_rows,
                    stride,
                    col: panel * LANES,
                };
                match group {
                    3 => tile_kernel::<3>(w, panel, xs, chunk, out, &target),
                    2 => tile_kernel::<2>(w, panel, xs, chunk, out, &target),
                    _ => tile_kernel::<1>(w, panel, xs, chunk, out, &target),
                }
                r += tile_rows;
            }
            panel += group;
        }
    }

    /// Where a tile's results go: `row` is the tile's first row within the chunk.
    struct Target {
        row: usize,
        rows: usize,
        stride: usize,
        col: usize,
    }

    /// ROWS rows × P panels of 16 columns; the i32 accumulators stay in registers over all of
    /// k. Rows beyond `target.rows` run on zero activations and are not stored.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_kernel<const P: usize>(
        w: &Int8Matrix,
        panel: usize,
        xs: &[u32],
        chunk: &Chunk<'_>,
        out: &mut [f32],
        target: &Target,
    ) {
        let quads = w.quads;
        assert!(xs.len() >= quads * ROWS);
        assert!(w.panels.len() >= (panel + P) * quads * LANES);
        assert!(w.scales.len() >= (panel + P) * LANES && w.sums.len() >= (panel + P) * LANES);
        let mut acc = [[_mm512_setzero_si512(); P]; ROWS];
        let xp = xs.as_ptr();
        let wp = w.panels.as_ptr().add(panel * quads * LANES);
        for q in 0..quads {
            // SAFETY: q < quads; both slices were checked to hold every index read here.
            let mut wv = [_mm512_setzero_si512(); P];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(wp.add((j * quads + q) * LANES) as *const _);
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_epi32(*xp.add(q * ROWS + i) as i32);
                for (a, v) in row.iter_mut().zip(&wv) {
                    *a = _mm512_dpbusd_epi32(*a, xv, *v);
                }
            }
        }
        for (j, _) in acc[0].iter().enumerate() {
            let col = target.col + j * LANES;
            let width = LANES.min(w.n - col);
            let mask: __mmask16 = if width == LANES {
                0xFFFF
            } else {
                ((1u32 << width) - 1) as __mmask16
            };
            let column_scales = _mm512_loadu_ps(w.scales.as_ptr().add(col));
            let column_sums = _mm512_loadu_si512(w.sums.as_ptr().add(col) as *const _);
            for (i, row) in acc.iter().enumerate().take(target.rows) {
                let r = target.row + i;
                let corrected = _mm512_sub_epi32(
                    row[j],
                    _mm512_mullo_epi32(_mm512_set1_epi32(chunk.zeros[r]), column_sums),
                );
                let scale = _mm512_mul_ps(column_scales, _mm512_set1_ps(chunk.scales[r]));
                let value = _mm512_mul_ps(_mm512_cvtepi32_ps(corrected), scale);
                let start = (chunk.first + r) * target.stride + col;
                assert!(start + width <= out.len());
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(start), mask, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let x = (0..m * k)
            .map(|i| ((i * 7 % 23) as f32 - 9.0) / 7.0)
            .collect();
        let w = (0..k * n)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) / 5.0 * (1.0 + (i % n) as f32 / n as f32))
            .collect();
        (x, w)
    }

    /// The error the quantisation allows, element by element: each activation is off by at
    /// most half its row step, each weight by half its column step, so
    /// |Δy| ≤ Σk (|x|·sw/2 + |W|·sx/2 + sx·sw/4), plus f32 rounding of the sums.
    fn bound(x: &[f32], w: &[f32], k: usize, n: usize, i: usize, j: usize, sw: f32) -> f64 {
        let row = &x[i * k..(i + 1) * k];
        let (lo, hi) = row
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let sx = ((hi - lo) / 255.0) as f64;
        let sw = sw as f64;
        let sum: f64 = (0..k)
            .map(|t| {
                (row[t].abs() as f64) * sw / 2.0
                    + (w[t * n + j].abs() as f64) * sx / 2.0
                    + sx * sw / 4.0
            })
            .sum();
        sum * 1.0001 + 1e-5
    }

    fn check(kernel: Int8Kernel, m: usize, k: usize, n: usize) -> Vec<f32> {
        let (x, w) = inputs(m, k, n);
        let matrix = Int8Matrix::new(&w, k, n, &[]);
        let stride = n + 3;
        let mut out = vec![f32::NAN; m * stride];
        matrix.matmul_with(kernel, &x, m, &mut out, stride);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|t| x[i * k + t] as f64 * w[t * n + j] as f64)
                    .sum();
                let got = out[i * stride + j] as f64;
                let allowed = bound(&x, &w, k, n, i, j, matrix.scales[j]);
                assert!(
                    (got - exact).abs() <= allowed,
                    "{kernel:?} [{i},{j}] {got} vs {exact} (allowed {allowed})"
                );
            }
            for j in n..stride {
                if i * stride + j < out.len() {
                    assert!(out[i * stride + j].is_nan(), "wrote outside its columns");
                }
            }
        }
        out
    }

    #[test]
    fn portable_kernel_is_within_the_quantisation_error() {
        // k not a multiple of 4, n not of 16 (1, 2 and 4 panels), m beyond one chunk.
        for (m, k, n) in [(133, 37, 21), (19, 64, 50), (3, 5, 7), (200, 40, 70)] {
            check(Int8Kernel::Portable, m, k, n);
        }
    }

    #[test]
    fn vnni_kernel_matches_the_portable_one_bit_for_bit() {
        if !vnni512_supported() {
            eprintln!("skipped: no AVX512-VNNI on this CPU (the portable kernel is tested)");
            return;
        }
        for (m, k, n) in [(133, 37, 21), (19, 64, 50), (3, 5, 7), (200, 40, 70)] {
            let vnni = check(Int8Kernel::Vnni512, m, k, n);
            let portable = check(Int8Kernel::Portable, m, k, n);
            for (a, b) in vnni.iter().zip(&portable) {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
        }
    }

    #[test]
    fn weights_on_an_int8_grid_are_stored_exactly() {
        // Two blocks, as a fused projection of two source tensors with their own scales: the
        // first on a grid (q · 0.013), the second not.
        let (k, n1, n2) = (24, 5, 6);
        let n = n1 + n2;
        let mut w = vec![0f32; k * n];
        for r in 0..k {
            for j in 0..n {
                w[r * n + j] = if j < n1 {
                    let q = ((r * 31 + j * 17) % 255) as i32 - 127; // reaches ±127
                    q as f32 * 0.013
                } else {
                    ((r * n + j) as f32 * 0.7).sin()
                };
            }
        }
        let matrix = Int8Matrix::new(&w, k, n, &[n1, n2]);
        assert_eq!(
            matrix.grid(),
            GridReport {
                source_blocks: 1,
                per_column_blocks: 1
            }
        );
        for r in 0..k {
            for j in 0..n1 {
                let got = matrix.dequantised(r, j);
                assert!(
                    (got - w[r * n + j]).abs() <= 1e-6 * w[r * n + j].abs().max(1e-3),
                    "[{r},{j}] {got} vs {}",
                    w[r * n + j]
                );
            }
            for j in n1..n {
                // Off the grid: within half a column step.
                let column_max = (0..k).map(|t| w[t * n + j].abs()).fold(0f32, f32::max);
                assert!(
                    (matrix.dequantised(r, j) - w[r * n + j]).abs() <= column_max / 254.0 + 1e-7
                );
            }
        }
    }

    #[test]
    fn a_constant_or_zero_row_is_exact() {
        let (k, n) = (8, 16);
        // Weights on a grid (±3 is ±127 steps), so only the activations could round.
        let w: Vec<f32> = (0..k * n).map(|i| ((i % 3) as f32 - 1.0) * 3.0).collect();
        let matrix = Int8Matrix::new(&w, k, n, &[]);
        let x = [vec![0f32; k], vec![2.5f32; k]].concat();
        let mut out = vec![0f32; 2 * n];
        matrix.matmul_with(Int8Kernel::Portable, &x, 2, &mut out, n);
        for j in 0..n {
            let column: f32 = (0..k).map(|t| w[t * n + j]).sum();
            assert_eq!(out[j], 0.0);
            assert!((out[n + j] - 2.5 * column).abs() <= 1e-4 * column.abs().max(1.0));
        }
    }
}
