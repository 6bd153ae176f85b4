//! Pooling over token states and L2 normalisation, once for every encoder.
//!
//! Formulas follow sentence-transformers: mean = Σ mask·h / max(Σ mask, 1e-9); CLS = first token;
//! max = max over unmasked tokens (masked ones set to −1e9); last token = last unmasked position;
//! L2 = x / max(‖x‖, 1e-12).

pub use crate::config::Pooling;
use candle_core::{DType, Result, Tensor, D};

impl Pooling {
    /// `hidden`: [batch, seq, dim]; `mask`: [batch, seq] of 0/1 (any dtype); `lengths`: unmasked
    /// tokens per row (right padding). Returns [batch, dim] in f32.
    pub fn pool(self, hidden: &Tensor, mask: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let hidden = hidden.to_dtype(DType::F32)?;
        match self {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)
            }
            Pooling::Max => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
                // h where mask = 1, −1e9 where mask = 0 (as sentence-transformers does).
                let fill = ((mask.ones_like()? - &mask)? * -1e9f64)?;
                hidden.broadcast_mul(&mask)?.broadcast_add(&fill)?.max(1)
            }
            Pooling::LastToken => {
                let rows = lengths
                    .iter()
                    .enumerate()
                    .map(|(row, &len)| hidden.get(row)?.get(len.saturating_sub(1)))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::stack(&rows, 0)
            }
        }
    }
}

impl Pooling {
    /// The same pooling over packed hidden states: sequence `i` is rows
    /// `offsets[i]..offsets[i + 1]` of `hidden` ([tokens, width]); no mask, every row is real.
    pub fn pool_packed(self, hidden: &[f32], offsets: &[usize], width: usize) -> Vec<Vec<f32>> {
        offsets
            .windows(2)
            .map(|range| {
                let rows = &hidden[range[0] * width..range[1] * width];
                let count = range[1] - range[0];
                match self {
                    Pooling::Cls => rows[..width.min(rows.len())].to_vec(),
                    Pooling::LastToken => rows[rows.len().saturating_sub(width)..].to_vec(),
                    Pooling::Mean => {
                        let mut sum = vec![0f32; width];
                        for row in rows.chunks_exact(width) {
                            for (s, v) in sum.iter_mut().zip(row) {
                                *s += v;
                            }
                        }
                        let count = (count as f32).max(1e-9);
                        sum.iter_mut().for_each(|s| *s /= count);
                        sum
                    }
                    Pooling::Max => {
                        let mut top = vec![if count == 0 { -1e9 } else { f32::MIN }; width];
                        for row in rows.chunks_exact(width) {
                            for (t, v) in top.iter_mut().zip(row) {
                                *t = t.max(*v);
                            }
                        }
                        top
                    }
                }
            })
            .collect()
    }
}

/// x / max(‖x‖₂, 1e-12) for one vector, in place.
pub fn l2_normalize_in_place(x: &mut [f32]) {
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v /= norm);
}

/// x / max(‖x‖₂, 1e-12) row-wise on [batch, dim].
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norms = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn example() -> (Tensor, Tensor, Vec<usize>) {
        // batch 2, seq 3, dim 2; row 1 has one padded position holding a huge value that must
        // never leak into the result.
        let hidden = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [5., 6.]],
                [[1., -1.], [3., 1.], [1000., 1000.]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &Device::Cpu).unwrap();
        (hidden, mask, vec![3, 2])
    }

    fn rows(t: Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    #[test]
    fn mean_ignores_padding() {
        let (h, m, l) = example();
        assert_eq!(
            rows(Pooling::Mean.pool(&h, &m, &l).unwrap()),
            vec![vec![3., 4.], vec![2., 0.]]
        );
    }

    #[test]
    fn cls_max_and_last_token() {
        let (h, m, l) = example();
        assert_eq!(
            rows(Pooling::Cls.pool(&h, &m, &l).unwrap()),
            vec![vec![1., 2.], vec![1., -1.]]
        );
        assert_eq!(
            rows(Pooling::Max.pool(&h, &m, &l).unwrap()),
            vec![vec![5., 6.], vec![3., 1.]]
        );
        assert_eq!(
            rows(Pooling::LastToken.pool(&h, &m, &l).unwrap()),
            vec![vec![5., 6.], vec![3., 1.]]
        );
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero() {
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        assert_eq!(
            rows(l2_normalize(&x).unwrap()),
            vec![vec![0.6, 0.8], vec![0., 0.]]
        );
    }
}
