//! Using a trained model: choosing the compute backend ([`backend`]), the model package on disk
//! ([`package`], its weights read by `weights`) and batch encoding of sentences with it ([`embed`]).

pub mod backend;
pub mod embed;
pub mod package;
pub(crate) mod weights;
