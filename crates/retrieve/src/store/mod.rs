//! Where stored questions live: the local index ([`LocalStore`]: snapshot, journal and graph on
//! this machine) or a Milvus collection ([`MilvusStore`]: vectors computed here, stored and
//! searched there). Commands and the server talk to a [`Store`]; which one is chosen by
//! `--index PATH` or `--store milvus://HOST:PORT/COLLECTION` ([`StoreUrl`]).
//!
//! Every store keeps, per item, a stable id, the sentence, an optional key and the vector, and
//! records the fingerprint and dimension of the model that embedded its vectors, so that a
//! search with another model is refused rather than answered with meaningless neighbours.

mod grpc;
mod http;
mod local;
mod milvus;
mod proto;

pub use local::LocalStore;
pub use milvus::{MilvusStore, MilvusUrl};

use crate::{NewItem, Result, RetrieveError};

/// One stored item found for a query, with its vector (the verdict head and the energy judge
/// the hit from it, the same way for every store).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHit {
    /// The item's id.
    pub id: u64,
    /// The caller's key, if stored with one.
    pub key: Option<String>,
    /// The stored sentence.
    pub sentence: String,
    /// Dot product with the query (cosine: vectors are unit length).
    pub score: f32,
    /// The stored vector.
    pub vector: Vec<f32>,
}

/// A place that stores embedded sentences and finds the nearest ones.
///
/// Methods take `&self`: a store serializes its writers itself, so a server shares one store
/// between all its requests.
pub trait Store: Send + Sync {
    /// Where the store is, for messages (a path or a `milvus://` address).
    fn location(&self) -> String;
    /// Items stored now (`None` when the store cannot tell cheaply).
    fn item_count(&self) -> Result<Option<usize>>;
    /// Whether [`add`](Store::add) and [`delete`](Store::delete) are allowed.
    fn writable(&self) -> bool;
    /// How searches run (`exact`, `graph`, `milvus`), for `/health`.
    fn search_kind(&self) -> &'static str;
    /// The `k` nearest stored items of each query (`queries`: one unit vector per row), best
    /// first.
    fn search(&self, queries: &[f32], dim: usize, k: usize) -> Result<Vec<Vec<StoredHit>>>;
    /// Stores `items` with their `vectors` (one row each) and answers their new ids once a
    /// search can find them.
    fn add(&self, items: Vec<NewItem>, vectors: &[f32]) -> Result<Vec<u64>>;
    /// Removes the items with these ids; answers the ids that were stored (and now are not).
    fn delete(&self, ids: &[u64]) -> Result<Vec<u64>>;
}

/// A store given on the command line: a local index path or a Milvus collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An index file on this machine.
    Local(std::path::PathBuf),
    /// A Milvus collection.
    Milvus(MilvusUrl),
}

impl std::str::FromStr for StoreUrl {
    type Err = RetrieveError;

    /// `milvus://HOST:PORT/COLLECTION`, or a path (optionally `file://PATH`).
    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("file://") {
            return Ok(StoreUrl::Local(rest.into()));
        }
        if s.contains("://") {
            return s.parse().map(StoreUrl::Milvus);
        }
        if s.is_empty() {
            return Err(RetrieveError::Invalid("the store is empty: give a path or milvus://HOST:PORT/COLLECTION".into()));
        }
        Ok(StoreUrl::Local(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_path_or_a_milvus_collection() {
        assert_eq!("runs/q.idx".parse::<StoreUrl>().unwrap(), StoreUrl::Local("runs/q.idx".into()));
        assert_eq!("file:///tmp/q.idx".parse::<StoreUrl>().unwrap(), StoreUrl::Local("/tmp/q.idx".into()));
        let StoreUrl::Milvus(m) = "milvus://127.0.0.1:19530/questions".parse::<StoreUrl>().unwrap() else { panic!() };
        assert_eq!((m.host.as_str(), m.port, m.collection.as_str()), ("127.0.0.1", 19530, "questions"));
        for bad in [
            "",
            "http://x:1/c",
            "milvus://x:1",
            "milvus://x:1/",
            "milvus://:1/c",
            "milvus://x:0/c",
            "milvus://x:99999/c",
            "milvus://x:1/a-b",
            "milvus://x:1/1abc",
        ] {
            assert!(bad.parse::<StoreUrl>().is_err(), "{bad:?} accepted");
        }
    }
}
