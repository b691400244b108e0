//! `pricing.json`: USD per 1,000 tokens per model.
//!
//! The file is built into the binary; `ORCH_PRICING_PATH`, or a `pricing.json`
//! in the working directory, replaces it. Lookups take the exact model name,
//! else the longest key the name starts with (endpoints answer with dated
//! names such as `gpt-4.1-2025-04-14`). A model matching `free_prefixes` costs
//! nothing; any other unknown model costs nothing and is reported once.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

/// The copy built into the binary.
pub const BUILT_IN: &str = include_str!("../pricing.json");

/// Prices of one model, USD per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    #[serde(default)]
    pub output: f64,
}

#[derive(Debug, Deserialize)]
struct PricingFile {
    models: BTreeMap<String, ModelPrice>,
    #[serde(default)]
    free_prefixes: Vec<String>,
}

/// How a model was priced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceLookup {
    Priced(ModelPrice),
    Free,
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: invalid pricing file: {message}")]
    Invalid { origin: String, message: String },
}

/// The loaded price table.
#[derive(Debug)]
pub struct Pricing {
    models: BTreeMap<String, ModelPrice>,
    free_prefixes: Vec<String>,
    /// Where it came from, for `config check` and logs.
    pub origin: String,
    warned: Mutex<HashSet<String>>,
}

impl Pricing {
    /// `override_path`, else `./pricing.json` when present, else the built-in copy.
    pub fn load(override_path: Option<&Path>) -> Result<Pricing, PricingError> {
        let local = Path::new("pricing.json");
        let path = override_path.or_else(|| local.exists().then_some(local));
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Pricing::parse(&text, &path.display().to_string())
            }
            None => Pricing::parse(BUILT_IN, "built-in pricing.json"),
        }
    }

    /// Parses and validates a pricing document.
    pub fn parse(text: &str, origin: &str) -> Result<Pricing, PricingError> {
        let invalid = |message: String| PricingError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let file: PricingFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (name, price) in &file.models {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(price.input) || !ok(price.output) {
                return Err(invalid(format!(
                    "model {name:?} has a negative or non-finite price"
                )));
            }
        }
        Ok(Pricing {
            models: file.models,
            free_prefixes: file.free_prefixes.into_iter().map(|p| p.to_lowercase()).collect(),
            origin: origin.to_string(),
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// The price of `model`.
    pub fn lookup(&self, model: &str) -> PriceLookup {
        if let Some(price) = self.models.get(model) {
            return PriceLookup::Priced(*price);
        }
        let longest = self
            .models
            .iter()
            .filter(|(key, _)| model.starts_with(key.as_str()))
            .max_by_key(|(key, _)| key.len());
        if let Some((_, price)) = longest {
            return PriceLookup::Priced(*price);
        }
        let lower = model.to_lowercase();
        if self.free_prefixes.iter().any(|p| lower.starts_with(p.as_str())) {
            return PriceLookup::Free;
        }
        PriceLookup::Unknown
    }

    /// USD for one call; an unknown model costs 0 and is warned about once.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        match self.lookup(model) {
            PriceLookup::Priced(p) => {
                (prompt_tokens as f64 * p.input + completion_tokens as f64 * p.output) / 1000.0
            }
            PriceLookup::Free => 0.0,
            PriceLookup::Unknown => {
                let first = self
                    .warned
                    .lock()
                    .map(|mut w| w.insert(model.to_string()))
                    .unwrap_or(false);
                if first {
                    tracing::warn!(model, "model not in pricing.json: its calls are counted as free");
                }
                0.0
            }
        }
    }

    /// How many models are priced.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> Pricing {
        Pricing::parse(BUILT_IN, "test").unwrap()
    }

    #[test]
    fn the_built_in_file_prices_the_default_models() {
        let p = built_in();
        assert_eq!(
            p.lookup("gpt-4.1"),
            PriceLookup::Priced(ModelPrice {
                input: 0.002,
                output: 0.008
            })
        );
        assert!(matches!(p.lookup("gpt-4.1-mini"), PriceLookup::Priced(_)));
        assert!(matches!(
            p.lookup("text-embedding-3-small"),
            PriceLookup::Priced(_)
        ));
    }

    #[test]
    fn dated_names_take_the_longest_matching_key() {
        let p = built_in();
        assert_eq!(p.lookup("gpt-4.1-mini-2025-04-14"), p.lookup("gpt-4.1-mini"));
        assert_eq!(p.lookup("gpt-4.1-2025-04-14"), p.lookup("gpt-4.1"));
    }

    #[test]
    fn cost_is_per_thousand_tokens() {
        let p = built_in();
        let cost = p.cost("gpt-4.1", 1000, 500);
        assert!((cost - (0.002 + 0.004)).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn local_models_are_free_and_unknown_ones_cost_nothing() {
        let p = built_in();
        assert_eq!(p.lookup("ollama/qwen2.5-coder"), PriceLookup::Free);
        assert_eq!(p.lookup("Qwen2.5-Coder-32B"), PriceLookup::Free);
        assert_eq!(p.lookup("mystery-model"), PriceLookup::Unknown);
        assert_eq!(p.cost("mystery-model", 10_000, 10_000), 0.0);
    }

    #[test]
    fn invalid_files_are_refused_with_their_origin() {
        let err = Pricing::parse(r#"{"models": {"m": {"input": -1}}}"#, "x.json").unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
        assert!(Pricing::parse("not json", "y").is_err());
        assert!(Pricing::parse(r#"{"models": {"m": {"input": 1, "outptu": 2}}}"#, "z").is_err());
    }
}
