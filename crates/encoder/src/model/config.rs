//! The shapes of the model, as stored in a package's `config.json`.
//!
//! These are plain serde structs rather than burn `Config`s so that a build without burn (the
//! `retrieve` binary's default) can read a package: they write the same JSON as burn's derive
//! did (every field, in declaration order), and read it back with the defaults filled in for
//! fields an older file lacks. With the `burn` feature, `init(&device)` builds the modules
//! (`model::encoder`, `model::head`).

use serde::{Deserialize, Serialize};

/// How the per-step LSTM states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The state after the last real token (for a BiLSTM: each direction's final state).
    #[default]
    Last,
    /// The mean of the states over the real tokens.
    Mean,
    /// The element-wise maximum of the states over the real tokens.
    Max,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            other => Err(format!("unknown pooling {other:?} (expected last, mean or max)")),
        }
    }
}

/// Everything needed to rebuild a sentence encoder; stored in the package's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Rows of the embedding table (the tokenizer's vocabulary size).
    pub vocab_size: usize,
    /// Size of a word vector.
    #[serde(default = "defaults::d_embed")]
    pub d_embed: usize,
    /// Size of the LSTM state (per direction).
    #[serde(default = "defaults::d_hidden")]
    pub d_hidden: usize,
    /// Also read each sentence backwards and concatenate both directions.
    #[serde(default)]
    pub bidirectional: bool,
    /// How states become a sentence vector.
    #[serde(default)]
    pub pooling: Pooling,
    /// Dropout on the word vectors during training.
    #[serde(default)]
    pub dropout: f64,
    /// Scale sentence vectors to unit length, so that Euclidean distance and cosine agree.
    #[serde(default = "defaults::yes")]
    pub normalize: bool,
    /// Seed of the weight initialisation.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
}

/// Shape of a verdict head; stored in the package's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictHeadConfig {
    /// Width of one sentence vector (the encoder's output).
    pub d_input: usize,
    /// Width of the hidden layer.
    #[serde(default = "defaults::d_hidden")]
    pub d_hidden: usize,
    /// Seed of the weight initialisation.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Both vectors are multiplied by this before the features are formed. Unit vectors of
    /// width d have coordinates near `1/√d`, so `√d` brings the features near 1, where freshly
    /// initialised weights (`±1/√fan_in`) give useful logits from the first steps.
    #[serde(default = "defaults::one")]
    pub input_scale: f64,
}

/// The defaults, in one place for `new` and for reading older files.
mod defaults {
    pub fn d_embed() -> usize {
        50
    }
    pub fn d_hidden() -> usize {
        128
    }
    pub fn yes() -> bool {
        true
    }
    pub fn seed() -> u64 {
        42
    }
    pub fn one() -> f64 {
        1.0
    }
}

/// `with_field(value)` builders, as burn's `Config` derive writes them.
macro_rules! builders {
    ($ty:ty { $($name:ident: $field:ident: $t:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $name(mut self, $field: $t) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

impl EncoderConfig {
    /// The default shape for a vocabulary of `vocab_size` words.
    pub fn new(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            d_embed: defaults::d_embed(),
            d_hidden: defaults::d_hidden(),
            bidirectional: false,
            pooling: Pooling::default(),
            dropout: 0.0,
            normalize: defaults::yes(),
            seed: defaults::seed(),
        }
    }

    /// Size of the sentence vectors this encoder produces.
    pub fn d_output(&self) -> usize {
        self.d_hidden * if self.bidirectional { 2 } else { 1 }
    }
}

builders!(EncoderConfig {
    with_vocab_size: vocab_size: usize,
    with_d_embed: d_embed: usize,
    with_d_hidden: d_hidden: usize,
    with_bidirectional: bidirectional: bool,
    with_pooling: pooling: Pooling,
    with_dropout: dropout: f64,
    with_normalize: normalize: bool,
    with_seed: seed: u64,
});

impl VerdictHeadConfig {
    /// The default head over vectors of width `d_input`.
    pub fn new(d_input: usize) -> Self {
        Self { d_input, d_hidden: defaults::d_hidden(), seed: defaults::seed(), input_scale: defaults::one() }
    }
}

builders!(VerdictHeadConfig {
    with_d_input: d_input: usize,
    with_d_hidden: d_hidden: usize,
    with_seed: seed: u64,
    with_input_scale: input_scale: f64,
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of the shipped package's encoder, as burn's `Config` derive wrote it: it reads
    /// back to the same values and writes out byte for byte the same.
    #[test]
    fn configs_read_and_write_the_json_burn_wrote() {
        let json = r#"{"vocab_size":25114,"d_embed":50,"d_hidden":128,"bidirectional":true,"pooling":"max","dropout":0.1,"normalize":true,"seed":42}"#;
        let config: EncoderConfig = serde_json::from_str(json).unwrap();
        let want = EncoderConfig::new(25114).with_bidirectional(true).with_pooling(Pooling::Max).with_dropout(0.1);
        assert_eq!(config, want);
        assert_eq!(serde_json::to_string(&config).unwrap(), json);
        assert_eq!(config.d_output(), 256);

        let head = r#"{"d_input":256,"d_hidden":64,"seed":7,"input_scale":16.0}"#;
        let config: VerdictHeadConfig = serde_json::from_str(head).unwrap();
        assert_eq!(config, VerdictHeadConfig::new(256).with_d_hidden(64).with_seed(7).with_input_scale(16.0));
        assert_eq!(serde_json::to_string(&config).unwrap(), head);
    }

    #[test]
    fn missing_fields_take_the_defaults() {
        let config: EncoderConfig = serde_json::from_str(r#"{"vocab_size":10}"#).unwrap();
        assert_eq!(config, EncoderConfig::new(10));
        let head: VerdictHeadConfig = serde_json::from_str(r#"{"d_input":8}"#).unwrap();
        assert_eq!(head, VerdictHeadConfig::new(8));
        assert!(serde_json::from_str::<EncoderConfig>(r#"{"d_embed":10}"#).is_err(), "vocab_size is required");
    }
}
