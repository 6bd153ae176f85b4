//! Short names for the models users configure most, each resolving to its Hugging Face id and
//! the settings its model card gives (dimension, max length, pooling, normalisation, prompts).
//! A config names an alias where it would name a model (`model = "bge-small-en"`); any setting
//! the config also gives wins over the alias's. The dimension is a check: a checkpoint behind
//! an alias that embeds to another width is refused at load, not exported.

use super::values::Pooling;

/// The role an alias's model plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliasRole {
    Dense,
    Sparse,
    Rerank,
}

impl AliasRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AliasRole::Dense => "dense",
            AliasRole::Sparse => "sparse",
            AliasRole::Rerank => "rerank",
        }
    }
}

/// One alias and what it sets.
#[derive(Debug, PartialEq)]
pub struct ModelAlias {
    pub alias: &'static str,
    pub hub_id: &'static str,
    pub role: AliasRole,
    /// `config.json`'s `model_type`.
    pub model_type: &'static str,
    /// Dense: the vector dimension; sparse: the vocabulary.
    pub dim: usize,
    pub max_length: usize,
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub query_prompt: Option<&'static str>,
    /// How this build's support of the model was checked (for the table in docs/models.md).
    pub verified: &'static str,
}

pub const ALIASES: &[ModelAlias] = &[
    ModelAlias {
        alias: "all-minilm-l6",
        hub_id: "sentence-transformers/all-MiniLM-L6-v2",
        role: AliasRole::Dense,
        model_type: "bert",
        dim: 384,
        max_length: 256,
        pooling: Some(Pooling::Mean),
        normalize: Some(true),
        query_prompt: None,
        verified: "real weights vs a float64 numpy reference; SciFact",
    },
    ModelAlias {
        alias: "bge-small-en",
        hub_id: "BAAI/bge-small-en-v1.5",
        role: AliasRole::Dense,
        model_type: "bert",
        dim: 384,
        max_length: 512,
        pooling: Some(Pooling::Cls),
        normalize: Some(true),
        query_prompt: Some("Represent this sentence for searching relevant passages: "),
        verified: "real weights (INT8-derived) in a two-model run; SciFact",
    },
    ModelAlias {
        alias: "bge-m3",
        hub_id: "BAAI/bge-m3",
        role: AliasRole::Dense,
        model_type: "xlm-roberta",
        dim: 1024,
        max_length: 8192,
        pooling: Some(Pooling::Cls),
        normalize: Some(true),
        query_prompt: None,
        verified: "architecture on tiny transformers checkpoints; real weights not run",
    },
    ModelAlias {
        alias: "qwen3-embedding-0.6b",
        hub_id: "Qwen/Qwen3-Embedding-0.6B",
        role: AliasRole::Dense,
        model_type: "qwen3",
        dim: 1024,
        max_length: 32768,
        pooling: Some(Pooling::LastToken),
        normalize: Some(true),
        query_prompt: Some(
            "Instruct: Given a web search query, retrieve relevant passages that answer the \
             query\nQuery:",
        ),
        verified:
            "architecture (Qwen3, and Qwen2) on tiny transformers checkpoints; real weights not run",
    },
    ModelAlias {
        alias: "splade-v3",
        hub_id: "naver/splade-v3",
        role: AliasRole::Sparse,
        model_type: "bert",
        dim: 30522,
        max_length: 512,
        pooling: None,
        normalize: None,
        query_prompt: None,
        verified: "architecture as SPLADE-tiny (real weights vs numpy); splade-v3 weights not run",
    },
    ModelAlias {
        alias: "ms-marco-minilm-l12",
        hub_id: "cross-encoder/ms-marco-MiniLM-L-12-v2",
        role: AliasRole::Rerank,
        model_type: "bert",
        dim: 1,
        max_length: 512,
        pooling: None,
        normalize: None,
        query_prompt: None,
        verified: "real weights vs a float64 numpy reference; SciFact",
    },
    ModelAlias {
        alias: "bge-reranker-v2-m3",
        hub_id: "BAAI/bge-reranker-v2-m3",
        role: AliasRole::Rerank,
        model_type: "xlm-roberta",
        dim: 1,
        max_length: 512,
        pooling: None,
        normalize: None,
        query_prompt: None,
        verified: "architecture on tiny transformers checkpoints; real weights not run",
    },
];

/// Why an alias cannot be used where the config put it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AliasError {
    #[error("model alias {alias} is a {role} model ({hub_id}); it cannot be the {wanted} model")]
    WrongRole {
        alias: &'static str,
        hub_id: &'static str,
        role: &'static str,
        wanted: &'static str,
    },
}

/// The alias `reference` names, if any (exact, case-insensitive: `BGE-M3` too). A path or a hub
/// id (with a `/`) is never an alias.
pub fn lookup(reference: &str) -> Option<&'static ModelAlias> {
    if reference.contains('/') {
        return None;
    }
    ALIASES
        .iter()
        .find(|alias| alias.alias.eq_ignore_ascii_case(reference))
}

/// The alias `reference` names for a model of `role`: `Ok(None)` when it is no alias, an error
/// when it names a model of another role or one this build does not run.
pub fn for_role(
    reference: &str,
    role: AliasRole,
) -> Result<Option<&'static ModelAlias>, AliasError> {
    let Some(alias) = lookup(reference) else {
        return Ok(None);
    };
    if alias.role != role {
        return Err(AliasError::WrongRole {
            alias: alias.alias,
            hub_id: alias.hub_id,
            role: alias.role.as_str(),
            wanted: role.as_str(),
        });
    }
    Ok(Some(alias))
}

/// The table of aliases in docs/models.md (a test keeps the page in step).
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| alias | model | role | type | dim | max length | pooling | query prompt | verified |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for a in ALIASES {
        let pooling = a.pooling.map_or("", |p| match p {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::LastToken => "last token",
        });
        let prompt = a
            .query_prompt
            .map_or(String::new(), |p| format!("`{}`", p.replace('\n', "\\n")));
        table.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
            a.alias,
            a.hub_id,
            a.role.as_str(),
            a.model_type,
            a.dim,
            a.max_length,
            pooling,
            prompt,
            a.verified
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_by_role_and_refuse_the_rest_by_name() {
        let bge = for_role("BGE-Small-EN", AliasRole::Dense).unwrap().unwrap();
        assert_eq!(bge.hub_id, "BAAI/bge-small-en-v1.5");
        assert_eq!(
            for_role("BAAI/bge-m3", AliasRole::Dense),
            Ok(None),
            "a hub id"
        );
        assert_eq!(for_role("./bge-m3", AliasRole::Dense), Ok(None), "a path");
        let err = for_role("bge-reranker-v2-m3", AliasRole::Dense).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model alias bge-reranker-v2-m3 is a rerank model (BAAI/bge-reranker-v2-m3); it \
             cannot be the dense model"
        );
        let qwen = for_role("qwen3-embedding-0.6b", AliasRole::Dense)
            .unwrap()
            .unwrap();
        assert_eq!(
            (qwen.model_type, qwen.pooling),
            ("qwen3", Some(Pooling::LastToken))
        );
    }
}

#[cfg(test)]
mod docs {
    /// The alias table of docs/models.md is this module's (rendered by [`super::markdown_table`]).
    #[test]
    fn the_models_page_lists_every_alias() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/models.md");
        let page = std::fs::read_to_string(path).unwrap();
        let table = super::markdown_table();
        assert!(
            page.contains(&table),
            "docs/models.md's alias table differs from src/models/aliases.rs; it should read:\n{table}"
        );
    }
}
