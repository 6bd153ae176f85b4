//! bf16 matrix products for CPUs with AVX512-BF16: weights stored once as bf16 pairs, the
//! activations rounded to bf16 per product, every product accumulated in f32 (`vdpbf16ps`,
//! 32 multiply-adds per instruction, twice the f32 FMA rate). Opt-in (`gpu.precision = "bf16"`):
//! the rounding changes results at the 1e-2 relative level, so its retrieval effect is reported
//! in BENCHMARKS.md.

/// Whether this CPU can run the bf16 products.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// f32 → bf16 bits, round to nearest even (inputs are finite).
#[inline(always)]
fn to_bf16(x: f32) -> u32 {
    let bits = x.to_bits();
    (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
}

/// Output columns per panel: one 512-bit register of f32.
const LANES: usize = 16;
/// Rows per micro-tile.
const ROWS: usize = 8;
/// Rows of activations converted and kept hot while every panel passes over them.
const ROW_CHUNK: usize = 128;

/// A [k, n] weight matrix as bf16 pairs: for each 16-column panel and each pair of rows
/// (2p, 2p + 1), 16 u32 lanes holding (W[2p][j], W[2p + 1][j]) — the operand layout of
/// `vdpbf16ps`. k is padded to even and n to a multiple of 16 with zeros.
pub struct Bf16Matrix {
    panels: Vec<u32>,
    k: usize,
    n: usize,
    pairs: usize,
}

impl Bf16Matrix {
    /// From a row-major [k, n] f32 matrix.
    pub fn new(values: &[f32], k: usize, n: usize) -> Self {
        let pairs = k.div_ceil(2);
        let panel_count = n.div_ceil(LANES);
        let mut panels = vec![0u32; panel_count * pairs * LANES];
        let at = |row: usize, col: usize| {
            if row < k && col < n {
                to_bf16(values[row * n + col])
            } else {
                0
            }
        };
        for panel in 0..panel_count {
            for pair in 0..pairs {
                for lane in 0..LANES {
                    let col = panel * LANES + lane;
                    panels[(panel * pairs + pair) * LANES + lane] =
                        at(2 * pair, col) | (at(2 * pair + 1, col) << 16);
                }
            }
        }
        Self {
            panels,
            k,
            n,
            pairs,
        }
    }

    /// `out[m, n] = x[m, k] · W` (rows of `out` `out_stride` apart). Needs [`supported`].
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32], out_stride: usize) {
        assert!(x.len() >= m * self.k, "lhs too short");
        assert!(
            m == 0 || out.len() >= (m - 1) * out_stride + self.n,
            "output too short"
        );
        assert!(supported(), "bf16 products need AVX512-BF16");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU features were checked just above; slice bounds are checked above and
        // inside.
        unsafe {
            kernel::matmul(self, x, m, out, out_stride)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{to_bf16, Bf16Matrix, LANES, ROWS, ROW_CHUNK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn matmul(
        w: &Bf16Matrix,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        out_stride: usize,
    ) {
        // Activation pairs of a chunk, tile by tile: for each tile of ROWS rows and each pair
        // p, the ROWS rows' pairs side by side, so a tile's broadcasts share a cache line.
        let mut pairs_buf = vec![0u32; ROW_CHUNK * w.pairs];
        let panel_count = w.n.div_ceil(LANES);
        for first in (0..m).step_by(ROW_CHUNK) {
            let rows = ROW_CHUNK.min(m - first);
            pairs_buf.fill(0);
            for r in 0..rows {
                let row = &x[(first + r) * w.k..(first + r + 1) * w.k];
                let (tile, lane) = (r / ROWS, r % ROWS);
                let base = tile * w.pairs * ROWS + lane;
                for p in 0..w.pairs {
                    let lo = to_bf16(row[2 * p]);
                    let hi = if 2 * p + 1 < w.k {
                        to_bf16(row[2 * p + 1])
                    } else {
                        0
                    };
                    pairs_buf[base + p * ROWS] = lo | (hi << 16);
                }
            }
            let mut panel = 0;
            while panel < panel_count {
                let group = (panel_count - panel).min(3);
                let mut r = 0;
                while r < rows {
                    let tile_rows = ROWS.min(rows - r);
                    let xs =
                        &pairs_buf[(r / ROWS) * w.pairs * ROWS..(r / ROWS + 1) * w.pairs * ROWS];
                    let target = Target {
                        row: first + r,
                        rows: tile_rows,
                        stride: out_stride,
                        col: panel * LANES,
                        n: w.n,
                    };
                    match group {
                        3 => tile_kernel::<3>(w, panel, xs, out, &target),
                        2 => tile_kernel::<2>(w, panel, xs, out, &target),
                        _ => tile_kernel::<1>(w, panel, xs, out, &target),
                    }
                    r += tile_rows;
                }
                panel += group;
            }
        }
    }

    /// Where a tile's results go.
    struct Target {
        row: usize,
        rows: usize,
        stride: usize,
        col: usize,
        n: usize,
    }

    /// ROWS rows × P panels of 16 columns; the accumulators stay in registers over all of k.
    /// Rows beyond `target.rows` are computed on zero activations and not stored.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile_kernel<const P: usize>(
        w: &Bf16Matrix,
        panel: usize,
        xs: &[u32],
        out: &mut [f32],
        target: &Target,
    ) {
        let pairs = w.pairs;
        assert!(xs.len() >= pairs * ROWS);
        assert!(w.panels.len() >= (panel + P) * pairs * LANES);
        let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
        let xp = xs.as_ptr();
        let wp = w.panels.as_ptr().add(panel * pairs * LANES);
        for p in 0..pairs {
            // SAFETY: p < pairs; both slices were checked to hold every index read here.
            let mut wv = [std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); P];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    wp.add((j * pairs + p) * LANES) as *const _,
                ));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xv: __m512bh = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    *xp.add(p * ROWS + i) as i32,
                ));
                for (a, v) in row.iter_mut().zip(&wv) {
                    *a = _mm512_dpbf16_ps(*a, xv, *v);
                }
            }
        }
        for (j, _) in acc[0].iter().enumerate() {
            let col = target.col + j * LANES;
            let width = LANES.min(target.n - col);
            let mask: __mmask16 = if width == LANES {
                0xFFFF
            } else {
                ((1u32 << width) - 1) as __mmask16
            };
            for (i, row) in acc.iter().enumerate().take(target.rows) {
                let start = (target.row + i) * target.stride + col;
                assert!(start + width <= out.len());
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(start), mask, row[j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f32_within_bf16_rounding() {
        if !supported() {
            eprintln!("skipped: no AVX512-BF16 on this CPU");
            return;
        }
        // Odd k, n not a multiple of 16 (2 and 4 panels: every panel grouping), m not a
        // multiple of the tile rows or the chunk.
        for (m, k, n) in [(133, 37, 21), (19, 64, 50)] {
            check_shape(m, k, n);
        }
    }

    fn check_shape(m: usize, k: usize, n: usize) {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let matrix = Bf16Matrix::new(&w, k, n);
        let stride = n + 3;
        let mut out = vec![f32::NAN; m * stride];
        matrix.matmul(&x, m, &mut out, stride);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|t| x[i * k + t] as f64 * w[t * n + j] as f64)
                    .sum();
                let scale: f64 = (0..k)
                    .map(|t| (x[i * k + t] as f64 * w[t * n + j] as f64).abs())
                    .sum();
                let got = out[i * stride + j] as f64;
                assert!(
                    (got - exact).abs() <= 1e-2 * scale + 1e-6,
                    "[{i},{j}] {got} vs {exact}"
                );
            }
            for j in n..stride {
                if i * stride + j < out.len() {
                    assert!(out[i * stride + j].is_nan(), "wrote outside its columns");
                }
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies exactly between two bf16 values: ties go to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    }
}
