//! Weights of the packed encoder, read once from a [`WeightsFile`] into f32 vectors in the layout
//! the products read: linear weights transposed to [in, out]; Q, K and V fused side by side.

use super::bf16::Bf16Matrix;
use super::int8::{GridReport, Int8Matrix};
use super::kernels::{self, MatRef, Rhs};
use super::Shape;
use crate::models::architecture::Family;
use crate::models::weights_file::WeightsFile;
use crate::models::ModelError;
use candle_core::DType;
use gemm::Parallelism;

/// A linear layer `y = x·Wᵀ + b` with W stored transposed: [in, out] row-major.
pub struct DenseLayer {
    pub weight_t: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
    /// Widths of the source tensors side by side in the output columns (Q, K, V of a fused
    /// projection): each had its own quantisation grid where the source was INT8.
    blocks: Vec<usize>,
    /// The same weights in the product format, when the products do not run in f32.
    products: Products,
}

/// The format a layer's products run in.
enum Products {
    F32,
    // Boxed: a layer holds one of them, and the f32 case should stay small.
    Bf16(Box<Bf16Matrix>),
    Int8(Box<Int8Matrix>),
}

impl DenseLayer {
    /// Loads `<prefix>.weight` [out, in] and `<prefix>.bias` [out].
    pub fn load(
        checkpoint: &WeightsFile,
        prefix: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<Self, ModelError> {
        let weight = tensor(checkpoint, &format!("{prefix}.weight"), &[outputs, inputs])?;
        Ok(Self {
            weight_t: transpose(&weight, outputs, inputs),
            bias: tensor(checkpoint, &format!("{prefix}.bias"), &[outputs])?,
            inputs,
            outputs,
            blocks: vec![outputs],
            products: Products::F32,
        })
    }

    /// Several layers with the same input side by side: one product instead of several.
    fn fused(parts: Vec<DenseLayer>) -> Self {
        let inputs = parts.first().map_or(0, |p| p.inputs);
        let outputs: usize = parts.iter().map(|p| p.outputs).sum();
        let mut weight_t = vec![0f32; inputs * outputs];
        let mut column = 0;
        for part in &parts {
            for row in 0..inputs {
                weight_t[row * outputs + column..row * outputs + column + part.outputs]
                    .copy_from_slice(&part.weight_t[row * part.outputs..(row + 1) * part.outputs]);
            }
            column += part.outputs;
        }
        Self {
            weight_t,
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
            inputs,
            outputs,
            blocks: parts
                .iter()
                .flat_map(|p| p.blocks.iter().copied())
                .collect(),
            products: Products::F32,
        }
    }

    /// `out[rows, outputs] = x[rows, inputs] · W` (bias not added: callers fuse it with what
    /// follows).
    pub fn apply(&self, x: &[f32], rows: usize, out: &mut [f32], parallelism: Parallelism) {
        match &self.products {
            Products::F32 => {}
            Products::Bf16(matrix) => {
                return matrix.matmul(&x[..rows * self.inputs], rows, out, self.outputs)
            }
            Products::Int8(matrix) => {
                return matrix.matmul(
                    &x[..rows * self.inputs],
                    rows,
                    out,
                    self.outputs,
                    parallelism,
                )
            }
        }
        kernels::matmul(
            MatRef::new(&x[..rows * self.inputs], rows, self.inputs),
            Rhs::Plain(MatRef::new(&self.weight_t, self.inputs, self.outputs)),
            out,
            self.outputs,
            1.0,
            parallelism,
        );
    }

    fn bytes(&self) -> usize {
        (self.weight_t.len() + self.bias.len()) * 4
    }

    /// Runs this layer's products in bf16 from now on (single-threaded per pass).
    pub fn use_bf16(&mut self) {
        self.products = Products::Bf16(Box::new(Bf16Matrix::new(
            &self.weight_t,
            self.inputs,
            self.outputs,
        )));
    }

    /// Runs this layer's products in INT8 from now on (single-threaded per pass); reports how
    /// its weights were quantised.
    pub fn use_int8(&mut self) -> GridReport {
        let matrix = Int8Matrix::new(&self.weight_t, self.inputs, self.outputs, &self.blocks);
        let report = matrix.grid();
        self.products = Products::Int8(Box::new(matrix));
        report
    }
}

/// One transformer layer.
pub struct LayerWeights {
    pub qkv: DenseLayer,
    pub attention_out: DenseLayer,
    pub attention_norm: (Vec<f32>, Vec<f32>),
    pub ffn_in: DenseLayer,
    pub ffn_out: DenseLayer,
    pub ffn_norm: (Vec<f32>, Vec<f32>),
}

pub(super) struct EncoderWeights {
    pub word: Vec<f32>,
    pub position: Vec<f32>,
    pub token_type: Vec<f32>,
    pub embedding_norm: (Vec<f32>, Vec<f32>),
    pub layers: Vec<LayerWeights>,
}

impl EncoderWeights {
    /// The layers' linear projections (where bf16 / INT8 products apply).
    fn projections(&mut self) -> impl Iterator<Item = &mut DenseLayer> {
        self.layers.iter_mut().flat_map(|layer| {
            [
                &mut layer.qkv,
                &mut layer.attention_out,
                &mut layer.ffn_in,
                &mut layer.ffn_out,
            ]
        })
    }

    /// Every layer's products in bf16 (embeddings, LayerNorms and attention stay f32).
    pub fn use_bf16(&mut self) {
        self.projections().for_each(DenseLayer::use_bf16);
    }

    /// Every layer's products in INT8 (embeddings, LayerNorms and attention stay f32, as in
    /// ONNX Runtime's dynamic quantisation); the blocks' grids summed.
    pub fn use_int8(&mut self) -> GridReport {
        self.projections()
            .map(DenseLayer::use_int8)
            .fold(GridReport::default(), |a, b| GridReport {
                source_blocks: a.source_blocks + b.source_blocks,
                per_column_blocks: a.per_column_blocks + b.per_column_blocks,
            })
    }

    pub fn load(
        checkpoint: &WeightsFile,
        shape: &Shape,
        family: Family,
    ) -> Result<Self, ModelError> {
        let prefix = encoder_prefix(checkpoint, family);
        let h = shape.hidden;
        let name = |rest: &str| format!("{prefix}{rest}");
        let norm = |path: &str| -> Result<(Vec<f32>, Vec<f32>), ModelError> {
            Ok((
                tensor(checkpoint, &format!("{path}.weight"), &[h])?,
                tensor(checkpoint, &format!("{path}.bias"), &[h])?,
            ))
        };
        let mut layers = Vec::with_capacity(shape.layers);
        for index in 0..shape.layers {
            let layer = name(&format!("encoder.layer.{index}."));
            let attention = format!("{layer}attention.");
            let linear = |rest: &str, inputs, outputs| {
                DenseLayer::load(checkpoint, &format!("{layer}{rest}"), inputs, outputs)
            };
            layers.push(LayerWeights {
                qkv: DenseLayer::fused(vec![
                    linear("attention.self.query", h, h)?,
                    linear("attention.self.key", h, h)?,
                    linear("attention.self.value", h, h)?,
                ]),
                attention_out: linear("attention.output.dense", h, h)?,
                attention_norm: norm(&format!("{attention}output.LayerNorm"))?,
                ffn_in: linear("intermediate.dense", h, shape.intermediate)?,
                ffn_out: linear("output.dense", shape.intermediate, h)?,
                ffn_norm: norm(&format!("{layer}output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word: tensor(
                checkpoint,
                &name("embeddings.word_embeddings.weight"),
                &[shape.vocab, h],
            )?,
            position: tensor(
                checkpoint,
                &name("embeddings.position_embeddings.weight"),
                &[shape.max_positions, h],
            )?,
            token_type: tensor(
                checkpoint,
                &name("embeddings.token_type_embeddings.weight"),
                &[shape.type_vocab, h],
            )?,
            embedding_norm: norm(&name("embeddings.LayerNorm"))?,
            layers,
        })
    }

    pub fn bytes(&self) -> usize {
        let norms = |n: &(Vec<f32>, Vec<f32>)| (n.0.len() + n.1.len()) * 4;
        (self.word.len() + self.position.len() + self.token_type.len()) * 4
            + norms(&self.embedding_norm)
            + self
                .layers
                .iter()
                .map(|l| {
                    l.qkv.bytes()
                        + l.attention_out.bytes()
                        + l.ffn_in.bytes()
                        + l.ffn_out.bytes()
                        + norms(&l.attention_norm)
                        + norms(&l.ffn_norm)
                })
                .sum::<usize>()
    }
}

/// `""` for a bare encoder checkpoint (sentence-transformers), the family's `"bert."` or
/// `"roberta."` for a task model.
pub fn encoder_prefix(checkpoint: &WeightsFile, family: Family) -> &'static str {
    if checkpoint.has("embeddings.word_embeddings.weight") {
        ""
    } else {
        family.task_prefix()
    }
}

/// A tensor as f32 values, checked against the expected shape.
pub fn tensor(
    checkpoint: &WeightsFile,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, ModelError> {
    checkpoint
        .vb
        .get(shape, name)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(ModelError::candle(format!(
            "{}: cannot load {name} as {shape:?}",
            checkpoint.path.display()
        )))
}

/// [rows, cols] row-major → [cols, rows] row-major.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}
