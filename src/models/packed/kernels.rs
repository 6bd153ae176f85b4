//! The arithmetic of the packed encoder: matrix products through the `gemm` crate (runtime
//! AVX2/AVX-512 dispatch, packed micro-kernels) and the element-wise kernels written so that
//! LLVM vectorises them: branch-free bodies, explicit multi-lane accumulators for reductions
//! (float sums are not reassociated otherwise) and our own `exp`/`erf`, because calls into libm
//! keep a loop scalar.
//!
//! The element-wise kernels are compiled three times — baseline, AVX2+FMA and AVX-512 — and
//! the best one the CPU has is chosen at run time, so the release binary stays portable.

use gemm::Parallelism;

/// Defines `pub fn $name(args)` calling the inlined generic kernel `$generic`, compiled for the
/// baseline target and, on x86-64, for AVX2+FMA and AVX-512, choosing at run time the best
/// variant the CPU supports (the feature checks are cached by std).
macro_rules! multiversioned {
    ($(#[$meta:meta])* fn $name:ident ( $($arg:ident : $ty:ty),* ) => $generic:ident) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were detected on this CPU just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

/// The variant of the element-wise kernels [`multiversioned`] functions run on this CPU:
/// `"avx512"`, `"avx2"` or `"baseline"` (the matrix products' `gemm` dispatches the same way).
pub fn kernel_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2";
        }
    }
    "baseline"
}

/// Lanes of the explicit accumulators: one AVX-512 register of f32.
const LANES: usize = 16;

/// A row-major matrix view: `rows` × `cols` with a row stride (columns are contiguous).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
        }
    }

    fn check(&self, what: &str) {
        let needed = if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + self.cols
        };
        assert!(
            self.data.len() >= needed && self.cols <= self.row_stride.max(self.cols),
            "{what}: {}×{} (stride {}) does not fit {} values",
            self.rows,
            self.cols,
            self.row_stride,
            self.data.len()
        );
    }
}

/// The right-hand operand of a product: `B` itself ([k, n] row-major view) or the transpose of a
/// row-major [n, k] view (so Q·Kᵀ reads K in place).
#[derive(Clone, Copy, Debug)]
pub enum Rhs<'a> {
    Plain(MatRef<'a>),
    Transposed(MatRef<'a>),
}

/// `out[m, n] = scale · (a[m, k] · b[k, n])`, written with row stride `out_stride`.
/// Panics (a programming error, never input) when a view does not fit its slice.
pub fn matmul(
    a: MatRef<'_>,
    b: Rhs<'_>,
    out: &mut [f32],
    out_stride: usize,
    scale: f32,
    parallelism: Parallelism,
) {
    a.check("lhs");
    let (k, n, rhs_ptr, rhs_rs, rhs_cs) = match b {
        Rhs::Plain(view) => {
            view.check("rhs");
            (view.rows, view.cols, view.data.as_ptr(), view.row_stride, 1)
        }
        Rhs::Transposed(view) => {
            view.check("rhsᵀ");
            (view.cols, view.rows, view.data.as_ptr(), 1, view.row_stride)
        }
    };
    assert_eq!(a.cols, k, "inner dimensions differ");
    let m = a.rows;
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        out.len() >= (m - 1) * out_stride + n,
        "output {m}×{n} (stride {out_stride}) does not fit {} values",
        out.len()
    );
    // SAFETY: every view was checked above to lie inside its slice; `out` is borrowed mutably,
    // so it cannot alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            false,
            a.data.as_ptr(),
            1,
            a.row_stride as isize,
            rhs_ptr,
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

multiversioned! {
    /// Adds `bias` to every row of `x` (rows of `bias.len()` values).
    fn add_bias(x: &mut [f32], bias: &[f32]) => add_bias_generic
}

#[inline(always)]
fn add_bias_generic(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// `x = gelu(x + bias)` row-wise, the exact (erf) GELU BERT uses. On AVX-512 CPUs the
/// hand-written kernel runs (the same formulas with fused multiply-adds; see
/// [`softmax_rows_unnormalised`] for why).
pub fn bias_gelu(x: &mut [f32], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU just above.
        return unsafe { avx512::bias_gelu(x, bias) };
    }
    bias_gelu_portable(x, bias)
}

multiversioned! {
    /// [`bias_gelu`] without AVX-512 (and its reference in the tests).
    fn bias_gelu_portable(x: &mut [f32], bias: &[f32]) => bias_gelu_generic
}

#[inline(always)]
fn bias_gelu_generic(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            let u = *v + b;
            *v = 0.5 * u * (1.0 + erf(u * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversioned! {
    /// `x = tanh-approximated GELU(x + bias)` (`gelu_new` / `gelu_pytorch_tanh`).
    fn bias_gelu_tanh(x: &mut [f32], bias: &[f32]) => bias_gelu_tanh_generic
}

#[inline(always)]
fn bias_gelu_tanh_generic(x: &mut [f32], bias: &[f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2/π)
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            let u = *v + b;
            let inner = C * (u + 0.044_715 * u * u * u);
            // tanh(z) = 1 − 2 / (e^{2z} + 1), saturating cleanly at both ends.
            let t = 1.0 - 2.0 / (exp(2.0 * inner) + 1.0);
            *v = 0.5 * u * (1.0 + t);
        }
    }
}

multiversioned! {
    /// `x = relu(x + bias)`.
    fn bias_relu(x: &mut [f32], bias: &[f32]) => bias_relu_generic
}

#[inline(always)]
fn bias_relu_generic(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = (*v + b).max(0.0);
        }
    }
}

multiversioned! {
    /// Row-wise `x = LayerNorm(x + bias + residual)`: the fused tail of every BERT sub-layer.
    /// `residual` may be empty (plain bias + LayerNorm).
    fn bias_residual_layer_norm(x: &mut [f32], bias: &[f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) => bias_residual_layer_norm_generic
}

#[inline(always)]
fn bias_residual_layer_norm_generic(
    x: &mut [f32],
    bias: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let width = gamma.len();
    for (index, row) in x.chunks_exact_mut(width).enumerate() {
        if !residual.is_empty() {
            let res = &residual[index * width..(index + 1) * width];
            for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
                *v += b + r;
            }
        } else if !bias.is_empty() {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
        let mean = sum(row) / width as f32;
        let mut squares = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for lane in 0..LANES {
                let d = chunk[lane] - mean;
                squares[lane] += d * d;
            }
        }
        let mut variance: f32 = chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum();
        variance += squares.iter().sum::<f32>();
        let inv = 1.0 / (variance / width as f32 + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// The unnormalised softmax: each row of `x` becomes exp(x − max(row)) and `sums[i]` gets
/// row i's sum, so the caller can apply 1/sum to something smaller than the row (attention
/// scales its [len, head_dim] output instead of the [len, len] probabilities).
///
/// On AVX-512 CPUs a hand-written kernel runs (`avx512::rows`): the auto-vectorised one
/// left the polynomial without fused multiply-adds, the row max with NaN checks and the last
/// `width % 16` values scalar, and was ≈ 12 % of an INT8 CrossEncoder run (perf).
pub fn softmax_rows_unnormalised(x: &mut [f32], width: usize, sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU just above.
        return unsafe { avx512::rows(x, width, sums) };
    }
    softmax_rows_portable(x, width, sums)
}

multiversioned! {
    /// [`softmax_rows_unnormalised`] without AVX-512 (and its reference in the tests).
    fn softmax_rows_portable(x: &mut [f32], width: usize, sums: &mut [f32]) => softmax_rows_unnormalised_generic
}

/// The element-wise kernels that auto-vectorisation left slow, written for AVX-512F.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// The lanes of the last, partial vector of `width` values.
    fn tail_mask(width: usize) -> __mmask16 {
        ((1u32 << (width % 16)) - 1) as __mmask16
    }

    /// `gelu(u)` = u/2 · (1 + erf(u/√2)) on 16 lanes, erf as [`super::erf`] computes it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn gelu16(u: __m512) -> __m512 {
        let z = _mm512_mul_ps(u, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm512_abs_ps(z);
        let one = _mm512_set1_ps(1.0);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(a, _mm512_set1_ps(0.327_591_1), one));
        let mut poly = _mm512_set1_ps(1.061_405_4);
        for c in [-1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6] {
            poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
        }
        poly = _mm512_mul_ps(poly, t);
        let minus_a2 = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a));
        let y = _mm512_fnmadd_ps(poly, exp16(minus_a2), one);
        let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, _mm512_setzero_ps());
        let erf = _mm512_mask_sub_ps(y, negative, _mm512_setzero_ps(), y);
        _mm512_mul_ps(
            _mm512_mul_ps(_mm512_set1_ps(0.5), u),
            _mm512_add_ps(one, erf),
        )
    }

    /// `x = gelu(x + bias)` for every row of `bias.len()` values.
    #[target_feature(enable = "avx512f")]
    pub(super) fn bias_gelu(x: &mut [f32], bias: &[f32]) {
        let width = bias.len();
        if width == 0 {
            return;
        }
        let full = width / 16;
        let tail = tail_mask(width);
        let b = bias.as_ptr();
        for row in x.chunks_exact_mut(width) {
            let ptr = row.as_mut_ptr();
            // SAFETY: as in `rows`: whole vectors inside the row and the bias, then one masked.
            unsafe {
                for i in 0..full {
                    let u = _mm512_add_ps(
                        _mm512_loadu_ps(ptr.add(16 * i)),
                        _mm512_loadu_ps(b.add(16 * i)),
                    );
                    _mm512_storeu_ps(ptr.add(16 * i), gelu16(u));
                }
                if tail != 0 {
                    let u = _mm512_add_ps(
                        _mm512_maskz_loadu_ps(tail, ptr.add(16 * full)),
                        _mm512_maskz_loadu_ps(tail, b.add(16 * full)),
                    );
                    _mm512_mask_storeu_ps(ptr.add(16 * full), tail, gelu16(u));
                }
            }
        }
    }

    /// `exp` of [`super::exp`] on 16 lanes: the same range reduction and degree-6 polynomial,
    /// evaluated with fused multiply-adds, 2^n applied by `vscalefps`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(0.001_388_889);
        for c in [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// Every row of `width` values of `x`: exp(v − max(row)) in place, the sum into `sums`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn rows(x: &mut [f32], width: usize, sums: &mut [f32]) {
        if width == 0 {
            return;
        }
        let full = width / 16;
        let tail = tail_mask(width);
        for (row, sum) in x.chunks_exact_mut(width).zip(sums.iter_mut()) {
            let ptr = row.as_mut_ptr();
            // SAFETY: every access lies in `row`: `full` whole vectors, then a masked one
            // covering the `width % 16` values after them (masked lanes are not touched).
            unsafe {
                let mut top = _mm512_set1_ps(f32::NEG_INFINITY);
                for i in 0..full {
                    top = _mm512_max_ps(top, _mm512_loadu_ps(ptr.add(16 * i)));
                }
                let last = _mm512_mask_loadu_ps(top, tail, ptr.add(16 * full));
                top = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(top, last)));
                let mut acc = _mm512_setzero_ps();
                for i in 0..full {
                    let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(ptr.add(16 * i)), top));
                    _mm512_storeu_ps(ptr.add(16 * i), e);
                    acc = _mm512_add_ps(acc, e);
                }
                let e = exp16(_mm512_sub_ps(last, top));
                _mm512_mask_storeu_ps(ptr.add(16 * full), tail, e);
                acc = _mm512_mask_add_ps(acc, tail, acc, e);
                *sum = _mm512_reduce_add_ps(acc);
            }
        }
    }
}

#[inline(always)]
fn softmax_rows_unnormalised_generic(x: &mut [f32], width: usize, sums: &mut [f32]) {
    for (row, sum) in x.chunks_exact_mut(width).zip(sums.iter_mut()) {
        *sum = exp_shifted_sum(row);
    }
}

/// row = exp(row − max(row)) in place; returns the sum (one pass for exp and sum).
#[inline(always)]
fn exp_shifted_sum(row: &mut [f32]) -> f32 {
    let top = max(row);
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for lane in 0..LANES {
            let e = exp(chunk[lane] - top);
            chunk[lane] = e;
            acc[lane] += e;
        }
    }
    let mut total: f32 = 0.0;
    for v in chunks.into_remainder() {
        *v = exp(*v - top);
        total += *v;
    }
    total + acc.iter().sum::<f32>()
}

multiversioned! {
    /// Multiplies `rows` rows of `width` values, `stride` apart in `x`, by `scales[i]`.
    fn scale_rows(x: &mut [f32], rows: usize, width: usize, stride: usize, scales: &[f32]) => scale_rows_generic
}

#[inline(always)]
fn scale_rows_generic(x: &mut [f32], rows: usize, width: usize, stride: usize, scales: &[f32]) {
    for (i, scale) in scales.iter().enumerate().take(rows) {
        let inv = 1.0 / scale;
        for v in &mut x[i * stride..i * stride + width] {
            *v *= inv;
        }
    }
}

multiversioned! {
    /// `acc = max(acc, row)` element-wise for every row of `rows` (the SPLADE running max).
    fn max_rows_into(acc: &mut [f32], rows: &[f32]) => max_rows_into_generic
}

#[inline(always)]
fn max_rows_into_generic(acc: &mut [f32], rows: &[f32]) {
    for row in rows.chunks_exact(acc.len()) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a = a.max(*v);
        }
    }
}

/// Σ x with LANES independent accumulators (vectorisable).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for lane in 0..LANES {
            acc[lane] += chunk[lane];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// max x (−∞ for an empty slice), vectorisable.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for lane in 0..LANES {
            acc[lane] = acc[lane].max(chunk[lane]);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    acc.iter().fold(tail, |a, &b| a.max(b))
}

/// e^x for f32, branch-free: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r
/// (relative error < 2e-7 over the range), 2^n built in the exponent bits. Inputs below −87
/// flush to 0 and above 88 saturate, which is what softmax and GELU need.
///
/// n is rounded with the 1.5·2²³ "magic number" and read back from the float's bits: a float →
/// integer `as` cast saturates and maps NaN to 0, which LLVM cannot vectorise (it emitted a
/// scalar convert and two conditional moves per element, ~10 % of a CrossEncoder run).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer (ties even)
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    // Cody–Waite split of ln 2 keeps r accurate.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // The low mantissa bits of `shifted` hold n (two's complement, |n| ≤ 127).
    let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

/// erf(x), Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), odd-symmetric.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_reference(x: f64) -> f64 {
        // Series for |x| < 3, continued fraction would be overkill for a test: use the
        // Maclaurin series with enough terms.
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_is_accurate_and_saturates() {
        for i in -870..=880 {
            let x = i as f32 / 10.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_is_accurate() {
        for i in -300..=300 {
            let x = i as f32 / 100.0;
            let want = erf_reference(x as f64);
            assert!(
                (erf(x) as f64 - want).abs() < 5e-7,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
    }

    #[test]
    fn softmax_matches_the_definition() {
        // As attention uses it: unnormalised exponentials, then 1/sum applied row by row.
        let mut rows = vec![1.0, 2.0, 3.0, -1.0, 0.0, 1000.0, 1000.0, -1000.0];
        let mut sums = [0.0; 2];
        softmax_rows_unnormalised(&mut rows, 4, &mut sums);
        scale_rows(&mut rows, 2, 4, 4, &sums);
        let want = |row: &[f64]| {
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect::<Vec<_>>()
        };
        let expected: Vec<f64> = [
            want(&[1.0, 2.0, 3.0, -1.0]),
            want(&[0.0, 1000.0, 1000.0, -1000.0]),
        ]
        .concat();
        for (g, w) in rows.iter().zip(expected) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    /// The AVX-512 softmax against the portable one, on widths around the vector length (the
    /// masked tail) and on rows with large and tiny values.
    #[test]
    fn the_avx512_softmax_agrees_with_the_portable_one() {
        for width in [1, 5, 15, 16, 17, 31, 32, 33, 150, 512] {
            let mut x: Vec<f32> = (0..3 * width)
                .map(|i| ((i as f32 * 0.731).sin() * 12.0) + if i % 7 == 0 { -100.0 } else { 0.0 })
                .collect();
            let mut reference = x.clone();
            let (mut sums, mut reference_sums) = (vec![0.0; 3], vec![0.0; 3]);
            softmax_rows_portable(&mut reference, width, &mut reference_sums);
            softmax_rows_unnormalised(&mut x, width, &mut sums);
            for (got, want) in x
                .iter()
                .chain(&sums)
                .zip(reference.iter().chain(&reference_sums))
            {
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "width {width}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_avx512_gelu_agrees_with_the_portable_one() {
        for width in [1, 7, 16, 37, 1536] {
            let bias: Vec<f32> = (0..width).map(|i| (i as f32 * 0.3).cos()).collect();
            let mut x: Vec<f32> = (0..2 * width)
                .map(|i| (i as f32 * 0.57).sin() * 6.0)
                .collect();
            let mut reference = x.clone();
            bias_gelu_portable(&mut reference, &bias);
            bias_gelu(&mut x, &bias);
            for (got, want) in x.iter().zip(&reference) {
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn layer_norm_with_residual_matches_the_definition() {
        let width = 37; // not a multiple of the lanes
        let x: Vec<f32> = (0..2 * width).map(|i| (i as f32 * 0.37).sin()).collect();
        let residual: Vec<f32> = (0..2 * width).map(|i| (i as f32 * 0.11).cos()).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.01).collect();
        let gamma: Vec<f32> = (0..width).map(|i| 1.0 + i as f32 * 0.02).collect();
        let beta: Vec<f32> = (0..width).map(|i| -(i as f32) * 0.03).collect();
        let mut got = x.clone();
        bias_residual_layer_norm(&mut got, &bias, &residual, &gamma, &beta, 1e-12);
        for row in 0..2 {
            let v: Vec<f64> = (0..width)
                .map(|i| (x[row * width + i] + bias[i] + residual[row * width + i]) as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / width as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / width as f64;
            for i in 0..width {
                let want = (v[i] - mean) / (var + 1e-12).sqrt() * gamma[i] as f64 + beta[i] as f64;
                assert!((got[row * width + i] as f64 - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gelu_matches_erf_definition() {
        let mut x: Vec<f32> = (-60..60).map(|i| i as f32 / 10.0).collect();
        let original = x.clone();
        bias_gelu(&mut x, &[0.0; 8]);
        for (g, u) in x.iter().zip(original) {
            let u = u as f64;
            let want = 0.5 * u * (1.0 + erf_reference(u / std::f64::consts::SQRT_2));
            assert!(
                (*g as f64 - want).abs() < 1e-6,
                "gelu({u}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn matmul_plain_and_transposed() {
        // a: 2×3, b: 3×2 (and its transpose stored 2×3)
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        let bt = [7.0, 9.0, 11.0, 8.0, 10.0, 12.0];
        let want = [58.0, 64.0, 139.0, 154.0];
        let mut out = [0.0; 4];
        matmul(
            MatRef::new(&a, 2, 3),
            Rhs::Plain(MatRef::new(&b, 3, 2)),
            &mut out,
            2,
            1.0,
            Parallelism::None,
        );
        assert_eq!(out, want);
        let mut out = [0.0; 4];
        matmul(
            MatRef::new(&a, 2, 3),
            Rhs::Transposed(MatRef::new(&bt, 2, 3)),
            &mut out,
            2,
            0.5,
            Parallelism::None,
        );
        assert_eq!(out, want.map(|v| v * 0.5));
    }
}
