//! What sentence-transformers reads besides the transformer itself: `modules.json` (which modules
//! follow the encoder), `1_Pooling/config.json`, `sentence_bert_config.json` (max length) and
//! `config_sentence_transformers.json` (prompts). A module we cannot reproduce is an error, not a
//! silently different embedding.

use super::{read_json, ModelError, Pooling};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The sentence-transformers settings of a model directory (all optional on disk).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SentenceTransformerInfo {
    /// From the Pooling module; `None` when the directory has no modules.json.
    pub pooling: Option<Pooling>,
    /// A Normalize module follows pooling.
    pub normalize: bool,
    /// `max_seq_length` of `sentence_bert_config.json`.
    pub max_seq_length: Option<usize>,
    /// Named prompts (`query`, `document`, …).
    pub prompts: BTreeMap<String, String>,
    pub default_prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Both layouts of `1_Pooling/config.json`: sentence-transformers before 5.x writes one boolean
/// per mode, 5.x one `pooling_mode` string (or list).
#[derive(Deserialize)]
struct PoolingFile {
    pooling_mode: Option<serde_json::Value>,
    /// `false`: the prompt's tokens are left out of the pooling (not reproduced here).
    include_prompt: Option<bool>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SbertFile {
    max_seq_length: Option<usize>,
}

/// Where sentence-transformers 5.x keeps the max length (and older versions fell back to).
#[derive(Deserialize)]
struct TokenizerConfigFile {
    model_max_length: Option<f64>,
}

/// transformers writes a huge sentinel (1e30) as `model_max_length` when a tokenizer sets none.
const UNSET_MODEL_MAX_LENGTH: f64 = 1e9;

#[derive(Deserialize)]
struct StConfigFile {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
}

impl SentenceTransformerInfo {
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let mut info = Self::default();
        let modules_path = dir.join("modules.json");
        if modules_path.is_file() {
            let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
            for module in modules {
                match module.kind.rsplit('.').next().unwrap_or_default() {
                    "Transformer" => {}
                    "Pooling" => {
                        let path = dir.join(&module.path).join("config.json");
                        info.pooling = Some(pooling_from_file(&path)?);
                    }
                    "Normalize" => info.normalize = true,
                    other => {
                        return Err(ModelError::Unsupported {
                            path: modules_path,
                            message: format!(
                                "sentence-transformers module {other:?} ({}) is not supported",
                                module.kind
                            ),
                        })
                    }
                }
            }
        }
        let sbert_path = dir.join("sentence_bert_config.json");
        if sbert_path.is_file() {
            let sbert: SbertFile = read_json(&sbert_path)?;
            info.max_seq_length = sbert.max_seq_length;
        }
        let tokenizer_config = dir.join("tokenizer_config.json");
        if info.pooling.is_some() && info.max_seq_length.is_none() && tokenizer_config.is_file() {
            let file: TokenizerConfigFile = read_json(&tokenizer_config)?;
            info.max_seq_length = file
                .model_max_length
                .filter(|length| (1.0..UNSET_MODEL_MAX_LENGTH).contains(length))
                .map(|length| length as usize);
        }
        let st_path = dir.join("config_sentence_transformers.json");
        if st_path.is_file() {
            let st: StConfigFile = read_json(&st_path)?;
            info.prompts = st.prompts;
            info.default_prompt_name = st.default_prompt_name;
        }
        Ok(info)
    }

    /// The prompt for a role (`query`, `document`), falling back to the default prompt.
    pub fn prompt(&self, role: &str) -> Option<&str> {
        self.prompts
            .get(role)
            .or_else(|| {
                self.default_prompt_name
                    .as_ref()
                    .and_then(|name| self.prompts.get(name))
            })
            .map(String::as_str)
            .filter(|prompt| !prompt.is_empty())
    }
}

fn pooling_from_file(path: &Path) -> Result<Pooling, ModelError> {
    let file: PoolingFile = read_json(path)?;
    let unsupported = |message: String| ModelError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    if file.include_prompt == Some(false) {
        return Err(unsupported(
            "include_prompt = false (pooling that leaves out the prompt's tokens) is not supported"
                .to_string(),
        ));
    }
    if let Some(mode) = &file.pooling_mode {
        let single = match mode {
            serde_json::Value::String(name) => Some(name.as_str()),
            serde_json::Value::Array(list) if list.len() == 1 => list[0].as_str(),
            _ => None,
        };
        return match single {
            Some("mean") => Ok(Pooling::Mean),
            Some("cls") => Ok(Pooling::Cls),
            Some("max") => Ok(Pooling::Max),
            Some("lasttoken") => Ok(Pooling::LastToken),
            _ => Err(unsupported(format!(
                "pooling_mode {mode}: only a single mean, cls, max or lasttoken mode is supported"
            ))),
        };
    }
    let modes = [
        (file.pooling_mode_mean_tokens, Some(Pooling::Mean)),
        (file.pooling_mode_cls_token, Some(Pooling::Cls)),
        (file.pooling_mode_max_tokens, Some(Pooling::Max)),
        (file.pooling_mode_lasttoken, Some(Pooling::LastToken)),
        (file.pooling_mode_mean_sqrt_len_tokens, None),
        (file.pooling_mode_weightedmean_tokens, None),
    ];
    let enabled: Vec<Option<Pooling>> = modes
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, mode)| *mode)
        .collect();
    match enabled.as_slice() {
        [Some(mode)] => Ok(*mode),
        [] => Err(unsupported("no pooling mode is enabled".to_string())),
        _ => Err(unsupported(
            "only a single mean, cls, max or last-token pooling mode is supported".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_pooling_normalize_length_and_prompts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        );
        write(
            dir,
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension":384,"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#,
        );
        write(
            dir,
            "sentence_bert_config.json",
            r#"{"max_seq_length":512,"do_lower_case":false}"#,
        );
        write(
            dir,
            "config_sentence_transformers.json",
            r#"{"prompts":{"query":"query: ","document":""},"default_prompt_name":null}"#,
        );
        let info = SentenceTransformerInfo::read(dir).unwrap();
        assert_eq!(info.pooling, Some(Pooling::Cls));
        assert!(info.normalize);
        assert_eq!(info.max_seq_length, Some(512));
        assert_eq!(info.prompt("query"), Some("query: "));
        assert_eq!(info.prompt("document"), None);
    }

    /// sentence-transformers 5.x: `pooling_mode` as a string, the max length in the
    /// tokenizer config; a pooling that drops the prompt is refused.
    #[test]
    fn reads_the_sentence_transformers_5_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.base.modules.transformer.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.sentence_transformer.modules.pooling.Pooling"}]"#,
        );
        write(
            dir,
            "1_Pooling/config.json",
            r#"{"embedding_dimension":32,"pooling_mode":"lasttoken","include_prompt":true}"#,
        );
        write(
            dir,
            "sentence_bert_config.json",
            r#"{"transformer_task":"feature-extraction"}"#,
        );
        write(dir, "tokenizer_config.json", r#"{"model_max_length":8192}"#);
        let info = SentenceTransformerInfo::read(dir).unwrap();
        assert_eq!(info.pooling, Some(Pooling::LastToken));
        assert_eq!(info.max_seq_length, Some(8192));

        write(dir, "tokenizer_config.json", r#"{"model_max_length":1e30}"#);
        assert_eq!(
            SentenceTransformerInfo::read(dir).unwrap().max_seq_length,
            None
        );

        for (config, expected) in [
            (r#"{"pooling_mode":["mean","max"]}"#, "only a single"),
            (r#"{"pooling_mode":"weightedmean"}"#, "only a single"),
            (
                r#"{"pooling_mode":"mean","include_prompt":false}"#,
                "include_prompt",
            ),
        ] {
            write(dir, "1_Pooling/config.json", config);
            let err = SentenceTransformerInfo::read(dir).unwrap_err().to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn unknown_module_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
        );
        let err = SentenceTransformerInfo::read(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("Dense"), "{err}");
    }

    #[test]
    fn plain_checkpoint_has_no_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let info = SentenceTransformerInfo::read(tmp.path()).unwrap();
        assert_eq!(info, SentenceTransformerInfo::default());
    }
}
