//! Typed setting values shared by the file, the environment and the flags.
//!
//! Each parses from the same string in all three layers (`FromStr`), and deserializes through it
//! so that a bad value in the file is reported by the TOML parser with its key and line.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A format of the points and query vectors (`output.formats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `points.jsonl` and `query_vectors.jsonl`.
    Jsonl,
    /// `points/part-NNNNN.parquet` and `query_vectors.parquet` (`export::parquet`).
    Parquet,
}

impl FromStr for OutputFormat {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "parquet" => Ok(Self::Parquet),
            other => Err(ValueError(format!(
                "unknown format {other:?} (expected \"jsonl\" or \"parquet\")"
            ))),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        })
    }
}

/// How dense vectors are written (`output.parquet_dense`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetDense {
    /// `fixed_size_list<float32, dim>`: what LanceDB needs for vector search, `FLOAT[dim]` in
    /// DuckDB, `Array` in Polars.
    #[default]
    FixedSizeList,
    /// `list<float32>`, for readers without fixed-size lists.
    List,
}

impl std::str::FromStr for ParquetDense {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed_size_list" => Ok(Self::FixedSizeList),
            "list" => Ok(Self::List),
            other => Err(format!(
                "unknown dense column type {other:?} (expected \"fixed_size_list\" or \"list\")"
            )),
        }
    }
}

impl std::fmt::Display for ParquetDense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FixedSizeList => "fixed_size_list",
            Self::List => "list",
        })
    }
}

/// How dense and sparse result lists are fused (see the fusion stage and [`crate::fusion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    /// Reciprocal rank fusion: Σ 1/(rank/weight + k), 1-based ranks (Qdrant's weighted RRF).
    Rrf,
    /// Distribution-based score fusion (Qdrant's DBSF).
    Dbsf,
    /// Weighted sum of normalised scores (`fusion.normalization`).
    Convex,
    /// The dense lists alone.
    Dense,
    /// The sparse list alone.
    Sparse,
    /// Chosen per collection from a menu, the CrossEncoder judging ([`crate::fusion::auto`]).
    Auto,
}

impl FusionMethod {
    /// The fusion method itself; `None` for `auto`, which chooses one per collection.
    pub fn fixed(self) -> Option<crate::fusion::Method> {
        use crate::fusion::Method;
        match self {
            FusionMethod::Rrf => Some(Method::Rrf),
            FusionMethod::Dbsf => Some(Method::Dbsf),
            FusionMethod::Convex => Some(Method::Convex),
            FusionMethod::Dense => Some(Method::Dense),
            FusionMethod::Sparse => Some(Method::Sparse),
            FusionMethod::Auto => None,
        }
    }
}

/// How the CrossEncoder's order and the fused order make the final list (`rerank.blend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RerankBlend {
    /// The CrossEncoder's order replaces the fused one.
    Replace,
    /// Reciprocal rank fusion of the CrossEncoder's rank and the fused rank.
    Rrf,
    /// `w · minmax(logit) + (1 − w) · minmax(fused score)` over the scored candidates.
    Convex,
}

/// How retrieval searches the stored vectors (the results are the same either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMethod {
    /// One pass over the stored vectors in fixed-size blocks: memory independent of the
    /// collection.
    Scan,
    /// Every stored vector mapped and an inverted index built over the sparse ones, while it
    /// fits `fusion.retrieval_memory` (else the scan).
    Index,
}

/// What the sparse stage does for chunks whose inference failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SparseFallback {
    /// Build the vector from the chunk's metadata term weights, flagged `source = "metadata"`.
    Metadata,
    /// Leave the chunk without a sparse vector (counted).
    None,
}

/// Log line format on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// Bars on a terminal, periodic plain log lines otherwise.
    Auto,
    /// Periodic plain log lines, even on a terminal.
    Lines,
    /// No progress (also what `--quiet` sets).
    Never,
}

/// Numeric precision of model weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 on CUDA, f32 on CPU.
    Auto,
    F32,
    F16,
    Bf16,
}

/// The format of a stage's matrix products in the packed CPU encoder (`[rerank] precision`,
/// `[sparse] precision`, `[[dense.models]] precision`); on a GPU the stage runs in
/// `gpu.precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuPrecision {
    /// Exact f32 products.
    F32,
    /// bf16 operands, f32 accumulation (AVX512-BF16 CPUs).
    Bf16,
    /// INT8 weights and per-row quantised activations, i32 accumulation (any CPU; AVX512-VNNI
    /// kernels where present).
    Int8,
}

impl CpuPrecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }
}

impl FromStr for CpuPrecision {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(
            s,
            &[
                ("f32", Self::F32),
                ("bf16", Self::Bf16),
                ("int8", Self::Int8),
            ],
        )
    }
}

/// Which devices the stages may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Every CUDA device when built with `cuda` and one is present, else the CPU.
    Auto,
    Cpu,
    /// `cuda:0,1`: these CUDA ordinals.
    Cuda(Vec<usize>),
}

/// `rerank.budget`: the overhead (sparse + fusion + rerank) allowed as a fraction of the dense
/// stage's time, which limits the rerank candidates (pipeline::rerank_budget), or `off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RerankBudget {
    Off,
    Fraction(f64),
}

impl RerankBudget {
    pub fn fraction(self) -> Option<f64> {
        match self {
            Self::Off => None,
            Self::Fraction(fraction) => Some(fraction),
        }
    }
}

impl FromStr for RerankBudget {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let (number, scale) = match text.strip_suffix('%') {
            Some(percent) => (percent.trim(), 0.01),
            None => (text, 1.0),
        };
        match number.parse::<f64>() {
            Ok(value) if value.is_finite() && value > 0.0 => Ok(Self::Fraction(value * scale)),
            _ => Err(ValueError(format!(
                "invalid budget {s:?}: expected a fraction of the dense stage's time greater than 0 (0.10, or \"10%\") or \"off\""
            ))),
        }
    }
}

impl fmt::Display for RerankBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Fraction(fraction) => write!(f, "{fraction}"),
        }
    }
}

/// A number in the file (`budget = 0.10`) or a string anywhere (`"off"`, `"10%"`, `"0.1"`).
impl<'de> Deserialize<'de> for RerankBudget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(number) => number.to_string().parse(),
            Written::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for RerankBudget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => serializer.serialize_str("off"),
            Self::Fraction(fraction) => serializer.serialize_f64(*fraction),
        }
    }
}

/// A size in bytes written like `12GiB`, `512MiB`, `2GB` or a plain byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a setting string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

fn parse_keyword<T: Copy>(s: &str, choices: &[(&str, T)]) -> Result<T, ValueError> {
    let wanted = s.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            ValueError(format!(
                "invalid value {s:?}: expected one of {}",
                names.join(", ")
            ))
        })
}

impl FromStr for FusionMethod {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(
            s,
            &[
                ("rrf", Self::Rrf),
                ("dbsf", Self::Dbsf),
                ("convex", Self::Convex),
                ("dense", Self::Dense),
                ("sparse", Self::Sparse),
                ("auto", Self::Auto),
            ],
        )
    }
}

impl FromStr for crate::fusion::Normalization {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use crate::fusion::Normalization;
        parse_keyword(
            s,
            &[
                ("min_max", Normalization::MinMax),
                ("z_score", Normalization::ZScore),
                ("none", Normalization::None),
            ],
        )
    }
}

impl FromStr for RerankBlend {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(
            s,
            &[
                ("replace", Self::Replace),
                ("rrf", Self::Rrf),
                ("convex", Self::Convex),
            ],
        )
    }
}

impl FromStr for RetrievalMethod {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(s, &[("scan", Self::Scan), ("index", Self::Index)])
    }
}

impl FromStr for SparseFallback {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(s, &[("metadata", Self::Metadata), ("none", Self::None)])
    }
}

impl FromStr for LogFormat {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(s, &[("text", Self::Text), ("json", Self::Json)])
    }
}

impl FromStr for ProgressMode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(
            s,
            &[
                ("auto", Self::Auto),
                ("lines", Self::Lines),
                ("never", Self::Never),
            ],
        )
    }
}

impl FromStr for Precision {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_keyword(
            s,
            &[
                ("auto", Self::Auto),
                ("f32", Self::F32),
                ("f16", Self::F16),
                ("bf16", Self::Bf16),
            ],
        )
    }
}

impl FromStr for DeviceSpec {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim().to_ascii_lowercase();
        match trimmed.as_str() {
            "auto" => return Ok(Self::Auto),
            "cpu" => return Ok(Self::Cpu),
            _ => {}
        }
        let bad = || {
            ValueError(format!(
                "invalid device {s:?}: expected auto, cpu, cuda or cuda:0,1"
            ))
        };
        let ordinals = match trimmed.strip_prefix("cuda") {
            Some("") => vec![0],
            Some(rest) => {
                let list = rest.strip_prefix(':').ok_or_else(bad)?;
                let mut ordinals = Vec::new();
                for part in list.split(',') {
                    let ordinal: usize = part.trim().parse().map_err(|_| bad())?;
                    if !ordinals.contains(&ordinal) {
                        ordinals.push(ordinal);
                    }
                }
                ordinals
            }
            None => return Err(bad()),
        };
        Ok(Self::Cuda(ordinals))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(ordinals) => {
                let list: Vec<String> = ordinals.iter().map(|o| o.to_string()).collect();
                write!(f, "cuda:{}", list.join(","))
            }
        }
    }
}

impl FromStr for ByteSize {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || {
            ValueError(format!(
                "invalid size {s:?}: expected a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        };
        let number: f64 = number.parse().map_err(|_| bad())?;
        let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        let bytes = number * multiplier;
        if !bytes.is_finite() {
            return Err(bad());
        }
        if bytes < 1.0 {
            return Err(ValueError(format!(
                "invalid size {s:?}: a size must be at least 1 byte (a memory ceiling of zero would let no stage run)"
            )));
        }
        if bytes >= u64::MAX as f64 {
            return Err(ValueError(format!("invalid size {s:?}: too large")));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GIB: u64 = 1 << 30;
        const MIB: u64 = 1 << 20;
        if self.0.is_multiple_of(GIB) {
            write!(f, "{}GiB", self.0 / GIB)
        } else if self.0.is_multiple_of(MIB) {
            write!(f, "{}MiB", self.0 / MIB)
        } else {
            write!(f, "{}B", self.0)
        }
    }
}

/// Serde through `FromStr`/`Display` for the non-keyword values.
macro_rules! serde_via_str {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}

/// A duration written like `30s`, `2m` or `1500ms` (humantime), e.g. `serve.request_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(pub std::time::Duration);

impl FromStr for Timeout {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let duration = humantime::parse_duration(s.trim()).map_err(|err| {
            ValueError(format!(
                "invalid duration {s:?}: {err} (write it like \"30s\", \"2m\" or \"1500ms\")"
            ))
        })?;
        if duration.is_zero() {
            return Err(ValueError(format!(
                "invalid duration {s:?}: must be longer than zero"
            )));
        }
        Ok(Timeout(duration))
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A secret (the server's API key): compared and used, never printed. It serialises as
/// `"<redacted>"`, so `embed-collections config` and logs never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Err(serde::de::Error::custom("an API key cannot be empty"));
        }
        Ok(Secret(text))
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

serde_via_str!(DeviceSpec, ByteSize, Timeout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_parse_as_they_print_and_as_the_file_writes_them() {
        for format in [OutputFormat::Jsonl, OutputFormat::Parquet] {
            let text = format.to_string();
            assert_eq!(text.parse::<OutputFormat>().unwrap(), format);
            assert_eq!(serde_json::to_value(format).unwrap(), text.as_str());
        }
        assert!("xml"
            .parse::<OutputFormat>()
            .unwrap_err()
            .0
            .contains("\"xml\""));
    }

    #[test]
    fn device_spec_parses_every_form() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("CPU".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Cuda(vec![0])
        );
        assert_eq!(
            "cuda:0,1".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Cuda(vec![0, 1])
        );
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("cuda0".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn rerank_budget_is_a_positive_fraction_a_percentage_or_off() {
        let parse = |s: &str| s.parse::<RerankBudget>();
        assert_eq!(parse("off").unwrap(), RerankBudget::Off);
        assert_eq!(parse(" OFF ").unwrap(), RerankBudget::Off);
        assert_eq!(parse("0.10").unwrap(), RerankBudget::Fraction(0.10));
        assert_eq!(parse("2").unwrap(), RerankBudget::Fraction(2.0));
        assert_eq!(parse("10%").unwrap().fraction(), Some(0.1));
        for bad in ["0", "-0.1", "ten", "NaN", "inf", "%", ""] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("\"off\""), "{bad}: {err}");
        }
        // The file's number and string forms.
        let table: toml::Table = toml::from_str("a = 0.25\nb = \"off\"\nc = 1").unwrap();
        let read = |key: &str| table[key].clone().try_into::<RerankBudget>().unwrap();
        assert_eq!(read("a"), RerankBudget::Fraction(0.25));
        assert_eq!(read("b"), RerankBudget::Off);
        assert_eq!(read("c"), RerankBudget::Fraction(1.0));
        assert!(toml::Value::Float(0.0).try_into::<RerankBudget>().is_err());
        assert!(toml::Value::Boolean(true)
            .try_into::<RerankBudget>()
            .is_err());
    }

    #[test]
    fn byte_size_units() {
        assert_eq!("12GiB".parse::<ByteSize>().unwrap().0, 12 << 30);
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("2GB".parse::<ByteSize>().unwrap().0, 2_000_000_000);
        assert_eq!("1000".parse::<ByteSize>().unwrap().0, 1000);
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap().0, 3 << 29);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(12 << 30).to_string(), "12GiB");
    }

    #[test]
    fn a_zero_size_says_why_it_is_refused() {
        for zero in ["0", "0GiB", "0.0001"] {
            let err = zero.parse::<ByteSize>().unwrap_err();
            assert!(err.0.contains("at least 1 byte"), "{zero}: {err}");
            assert!(!err.0.contains("expected a number"), "{zero}: {err}");
        }
        assert!("99999999999999GiB"
            .parse::<ByteSize>()
            .unwrap_err()
            .0
            .contains("too large"));
    }

    #[test]
    fn keywords_name_the_choices() {
        let err = "bm25".parse::<FusionMethod>().unwrap_err();
        assert!(
            err.0.contains("rrf, dbsf, convex, dense, sparse, auto"),
            "{err}"
        );
    }
}

/// How token states become one vector (`dense.models[].pooling`; the computation is
/// `models::pooling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Mean,
    Cls,
    Max,
    LastToken,
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::LastToken => "last_token",
        })
    }
}

impl FromStr for Pooling {
    type Err = ValueError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            "last_token" | "lasttoken" => Ok(Pooling::LastToken),
            _ => Err(ValueError(format!(
                "invalid pooling {s:?}: expected one of mean, cls, max, last_token"
            ))),
        }
    }
}

/// The columns of the Parquet files other than the vectors (a vector may not take their names).
pub const PARQUET_COLUMNS: [&str; 10] = [
    "id",
    "chunk_id",
    "collection",
    "sparse_source",
    "title",
    "text",
    "metadata",
    "query_id",
    "query_sha256",
    "source",
];
