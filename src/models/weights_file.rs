//! Opening a weights file as a `VarBuilder`, with the naming quirks real checkpoints have
//! resolved here, at load time, so that no model code ever sees them:
//!
//! - legacy LayerNorm names: `…LayerNorm.gamma`/`.beta` answer for `…LayerNorm.weight`/`.bias`;
//! - `model.safetensors` or `pytorch_model.bin`.
//!
//! Tied weights (an MLM decoder that reuses the word embeddings) are a property of the head, and
//! the head asks [`WeightsFile::has`] before choosing which tensor to load.

use super::architecture::Architecture;
use super::ModelError;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open checkpoint: its tensor names and a builder that resolves legacy names.
pub struct WeightsFile {
    pub path: PathBuf,
    names: Arc<HashSet<String>>,
    pub vb: VarBuilder<'static>,
}

impl WeightsFile {
    pub fn open(path: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let read_err = ModelError::candle(format!("{}: cannot read weights", path.display()));
        let is_safetensors = path.extension().is_some_and(|ext| ext == "safetensors");
        let (names, vb) = if is_safetensors {
            // SAFETY: the file is memory-mapped read-only; like every mmap-based loader we rely
            // on nobody truncating the model file while the run holds it.
            let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
                .map_err(read_err)?;
            let names: HashSet<String> = tensors.tensors().into_iter().map(|(n, _)| n).collect();
            (
                names,
                VarBuilder::from_backend(Box::new(tensors), dtype, device.clone()),
            )
        } else {
            let tensors = candle_core::pickle::PthTensors::new(path, None).map_err(read_err)?;
            let names: HashSet<String> = tensors.tensor_infos().keys().cloned().collect();
            (
                names,
                VarBuilder::from_backend(Box::new(tensors), dtype, device.clone()),
            )
        };
        let names = Arc::new(names);
        let lookup = Arc::clone(&names);
        let vb = vb.rename_f(move |name| resolve_alias(name, &lookup));
        Ok(Self {
            path: path.to_path_buf(),
            names,
            vb,
        })
    }

    /// Whether the checkpoint holds `name` (directly or under its legacy alias).
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&resolve_alias(name, &self.names))
    }
}

/// The cheap checks of a weights file, without loading a tensor: the safetensors header parses
/// and every tensor lies inside the file (a truncated download fails here, not at the first
/// batch), and the embedding tables have the shapes `config.json` promises. Returns the
/// file's size, what one copy of the weights costs. A `.bin` (pickle) file is only sized.
pub fn inspect_weights(path: &Path, architecture: &Architecture) -> Result<u64, ModelError> {
    let bytes = std::fs::metadata(path)
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if path.extension().is_none_or(|ext| ext != "safetensors") {
        return Ok(bytes);
    }
    let unsupported = |message: String| ModelError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    // SAFETY: as in `WeightsFile::open`; only the header is read.
    let tensors =
        unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(|err| {
            unsupported(format!(
                "not a valid safetensors file (truncated or corrupt?): {err}"
            ))
        })?;
    let shapes: Vec<(String, Vec<usize>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    let hidden = architecture.hidden_size();
    let expected = match architecture {
        Architecture::Encoder(config) => vec![
            ("embeddings.word_embeddings.weight", config.vocab_size),
            (
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings,
            ),
        ],
        Architecture::Decoder(config) => vec![("embed_tokens.weight", config.vocab_size)],
    };
    for (suffix, rows) in expected {
        let found = shapes
            .iter()
            .find(|(name, _)| name == suffix || name.ends_with(&format!(".{suffix}")));
        match found {
            None => return Err(unsupported(format!("no tensor `{suffix}`"))),
            Some((name, shape)) if shape[..] != [rows, hidden] => {
                return Err(unsupported(format!(
                    "tensor `{name}` has shape {shape:?}, config.json says [{rows}, {hidden}]"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(bytes)
}

/// The stored name for a requested one: itself when present, else its legacy alias if that is
/// present, else itself (so the error names what the model asked for).
fn resolve_alias(name: &str, names: &HashSet<String>) -> String {
    if names.contains(name) {
        return name.to_string();
    }
    let legacy = if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
        Some(format!("{stem}LayerNorm.gamma"))
    } else {
        name.strip_suffix("LayerNorm.bias")
            .map(|stem| format!("{stem}LayerNorm.beta"))
    };
    match legacy {
        Some(alias) if names.contains(&alias) => alias,
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_layer_norm_names_resolve() {
        let names: HashSet<String> = [
            "a.LayerNorm.gamma",
            "a.LayerNorm.beta",
            "b.LayerNorm.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            resolve_alias("a.LayerNorm.weight", &names),
            "a.LayerNorm.gamma"
        );
        assert_eq!(
            resolve_alias("a.LayerNorm.bias", &names),
            "a.LayerNorm.beta"
        );
        assert_eq!(
            resolve_alias("b.LayerNorm.weight", &names),
            "b.LayerNorm.weight"
        );
        assert_eq!(resolve_alias("c.dense.weight", &names), "c.dense.weight");
    }
}
