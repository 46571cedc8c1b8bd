//! The model, the same on every backend: its shapes as stored in a package ([`config`]); with
//! the `burn` feature, the burn modules and what trains them: the sentence encoder and its twin
//! ([`SentenceEncoder`], [`TwinEncoder`]), the masked LSTM inside it ([`lstm`]), the optional
//! verdict head ([`head`]), the training objectives ([`loss`]) and GloVe word vectors to start
//! the embedding table from ([`glove`]). The energies that compare two vectors ([`energy`]) have
//! a host form everywhere and a tensor form with burn.

pub mod config;
#[cfg(feature = "burn")]
mod encoder;
pub mod energy;
#[cfg(feature = "burn")]
pub mod glove;
#[cfg(feature = "burn")]
pub mod head;
#[cfg(feature = "burn")]
pub mod loss;
#[cfg(feature = "burn")]
pub mod lstm;

pub use self::config::{EncoderConfig, Pooling, VerdictHeadConfig};
#[cfg(feature = "burn")]
pub use self::encoder::{l2_normalize, BatchTensors, SentenceEncoder, TwinEncoder};
