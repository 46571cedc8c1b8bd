//! Using a trained model: choosing the compute backend ([`backend`]), the model package on disk
//! ([`package`], its weights read by `weights`), batch encoding of sentences with it
//! ([`embed`]) and how search flags its hits ([`flag`]).

pub mod backend;
pub mod embed;
pub mod flag;
pub mod package;
pub(crate) mod weights;
