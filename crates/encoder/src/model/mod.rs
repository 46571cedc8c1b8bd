//! The burn model and what trains it, the same on every backend: the sentence encoder and its
//! twin ([`SentenceEncoder`], [`TwinEncoder`]), the masked LSTM inside it ([`lstm`]), the energies
//! that compare two vectors ([`energy`]), the optional verdict head ([`head`]), the training
//! objectives ([`loss`]) and GloVe word vectors to start the embedding table from ([`glove`]).

mod encoder;
pub mod energy;
pub mod glove;
pub mod head;
pub mod loss;
pub mod lstm;

pub use self::encoder::{l2_normalize, BatchTensors, EncoderConfig, Pooling, SentenceEncoder, TwinEncoder};
