//! A Milvus collection as a store: vectors are computed here and stored and searched there.
//!
//! The client speaks Milvus' REST API (`/v1/vector/...`, served by Milvus 2.3 on its gRPC port)
//! through a minimal blocking HTTP/1.1 client ([`super::http`]). The official Rust SDK brings a
//! gRPC and TLS stack (tonic, prost, rustls) into every build; REST needs neither. Bulk loads
//! ([`MilvusStore::insert`]) are the exception: Milvus spends its cores parsing a REST insert's
//! JSON, so they send gRPC `Insert` calls over a minimal HTTP/2 client of their own
//! ([`super::grpc`], messages in [`super::proto`]) unless a token is set (gRPC authentication is
//! not implemented; with a token they use REST). It is plain HTTP: reach a TLS endpoint through a
//! local proxy.
//!
//! The collection is created by `retrieve index --store` with an auto-generated int64 primary
//! key `id` (the item's id), a float vector `vector` with the inner product as metric (cosine on
//! unit vectors), and the sentence and key as dynamic fields. Its description records the model
//! fingerprint and dimension, checked on every open. Milvus searches with bounded consistency, so
//! writes wait until a read sees them before answering: an add is searchable when `add` returns.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http::{Client, Failure};
use super::{Store, StoredHit};
use crate::{NewItem, Result, RetrieveError};

/// A Milvus collection's address: `milvus://HOST:PORT/COLLECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilvusUrl {
    /// Host name or address.
    pub host: String,
    /// The REST (and gRPC) port, 19530 by default in Milvus.
    pub port: u16,
    /// The collection.
    pub collection: String,
}

impl FromStr for MilvusUrl {
    type Err = RetrieveError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| RetrieveError::Invalid(format!("{s:?}: {why} (expected milvus://HOST:PORT/COLLECTION)"));
        let rest = s.strip_prefix("milvus://").ok_or_else(|| bad("not a milvus:// address"))?;
        let (authority, collection) = rest.split_once('/').ok_or_else(|| bad("no collection"))?;
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad("bad host"));
        }
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?;
        // Milvus' rule for collection names.
        let mut chars = collection.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || collection.len() > 255 {
            return Err(bad("a collection name is a letter or _ then letters, digits or _"));
        }
        Ok(Self { host: host.to_string(), port, collection: collection.to_string() })
    }
}

impl fmt::Display for MilvusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "milvus://{}:{}/{}", self.host, self.port, self.collection)
    }
}

/// What a collection made by this tool records in its description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    /// Always [`MARK`]: a collection without it was not made here and is left alone.
    store: String,
    /// Layout of the collection (fields, metric); bumped if it changes.
    format: u32,
    /// The embedding model's fingerprint.
    fingerprint: String,
    /// Vector size.
    dim: usize,
}

const MARK: &str = "twin-lstm";
const FORMAT: u32 = 1;

/// Rows per REST insert request: a few MB of JSON, well under the server's request limits.
const INSERT_ROWS: usize = 2000;
/// Rows per gRPC insert call: a few MB of protobuf.
const GRPC_INSERT_ROWS: usize = 5000;
/// The gRPC method of an insert.
const INSERT_METHOD: &str = "/milvus.proto.milvus.MilvusService/Insert";
/// Insert requests in flight during a bulk load.
const INSERTS_IN_FLIGHT: usize = 2;
/// Rows per page when reading the whole collection.
const PAGE_ROWS: usize = 4096;
/// Milvus' largest `limit` of a search.
pub const MAX_K: usize = 16384;
/// Ids per `get` or `delete` request.
const ID_BATCH: usize = 1000;
/// How long a write waits for reads to see it, and a new collection to load.
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);
/// Attempts of a request that may be repeated.
const ATTEMPTS: u32 = 5;
/// Pause before the second attempt; each later pause doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// How inserts reach the server.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Transport {
    /// REST `/v1/vector/insert`, JSON rows.
    Rest,
    /// gRPC `Insert`, protobuf columns: far less work for the server per row.
    Grpc,
}

/// Whether a failed request may be sent again.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    /// Reads, and writes that give the same result twice (delete): on any transport failure or
    /// server error.
    Idempotent,
    /// Inserts (the server assigns ids, so a repeat would store twice): only when the
    /// connection failed, i.e. nothing was sent.
    ConnectOnly,
}

/// A Milvus collection made by `retrieve index --store`.
pub struct MilvusStore {
    url: MilvusUrl,
    http: Client,
    token: Option<String>,
    meta: Meta,
    /// Items stored when last counted, for `len` without a round trip per health check.
    counted: Mutex<Option<(Instant, usize)>>,
}

impl fmt::Debug for MilvusStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MilvusStore").field("url", &self.url.to_string()).field("dim", &self.meta.dim).finish()
    }
}

/// An id as Milvus writes it in JSON (a string, or a number for small ids).
fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    }
}

impl MilvusStore {
    fn unconnected(url: &MilvusUrl, meta: Meta) -> Self {
        Self {
            http: Client::new(&url.host, url.port, Duration::from_secs(3), Duration::from_secs(60)),
            url: url.clone(),
            token: std::env::var("TWIN_MILVUS_TOKEN").ok().filter(|t| !t.is_empty()),
            meta,
            counted: Mutex::new(None),
        }
    }

    fn fail(&self, reason: impl Into<String>) -> RetrieveError {
        RetrieveError::Store { location: self.url.to_string(), reason: reason.into() }
    }

    /// Opens the collection at `url`, made earlier by [`create`](Self::create).
    pub fn open(url: &MilvusUrl) -> Result<Self> {
        let mut store = Self::unconnected(url, Meta { store: MARK.into(), format: FORMAT, fingerprint: String::new(), dim: 0 });
        match store.describe()? {
            None => Err(store
                .fail(format!("no collection {:?} on this server: create it with `retrieve index FILE --store {url}`", url.collection))),
            Some(meta) => {
                store.meta = meta;
                Ok(store)
            }
        }
    }

    /// Creates the collection at `url` for vectors of `dim` from the model `fingerprint`, and
    /// waits until it can be searched. An existing collection is never replaced.
    pub fn create(url: &MilvusUrl, fingerprint: &str, dim: usize) -> Result<Self> {
        Self::check_absent(url)?;
        let meta = Meta { store: MARK.into(), format: FORMAT, fingerprint: fingerprint.into(), dim };
        let store = Self::unconnected(url, meta.clone());
        let description = serde_json::to_string(&meta).map_err(|e| store.fail(e.to_string()))?;
        store.call(
            "POST",
            "/v1/vector/collections/create",
            Some(&json!({
                "collectionName": url.collection,
                "dimension": dim,
                "metricType": "IP",
                "primaryField": "id",
                "vectorField": "vector",
                "description": description,
            })),
            Retry::ConnectOnly,
        )?;
        let deadline = Instant::now() + VISIBLE_WITHIN;
        let mut pause = Duration::from_millis(20);
        loop {
            let d = store.describe_raw()?.ok_or_else(|| store.fail("the collection vanished right after it was created"))?;
            if d.get("load").and_then(Value::as_str) == Some("LoadStateLoaded") {
                return Ok(store);
            }
            if Instant::now() > deadline {
                return Err(store.fail("the new collection did not load within a minute"));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// An error unless the server answers and has no collection at `url`: checked before
    /// embedding anything for a new collection.
    pub fn check_absent(url: &MilvusUrl) -> Result<()> {
        let store = Self::unconnected(url, Meta { store: MARK.into(), format: FORMAT, fingerprint: String::new(), dim: 0 });
        if store.describe_raw()?.is_some() {
            return Err(store.fail(format!(
                "collection {:?} exists; this tool never replaces a collection: drop it with your Milvus tools, or choose another name",
                url.collection
            )));
        }
        Ok(())
    }

    /// The collection's description, or `None` when there is no such collection.
    fn describe_raw(&self) -> Result<Option<Value>> {
        let path = format!("/v1/vector/collections/describe?collectionName={}", self.url.collection);
        match self.call("GET", &path, None, Retry::Idempotent) {
            Ok(v) => Ok(Some(v)),
            Err(RetrieveError::Store { reason, .. })
                if reason.contains("can't find collection") || reason.contains("collection not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The record of a collection made here; an error for any other collection.
    fn describe(&self) -> Result<Option<Meta>> {
        let Some(d) = self.describe_raw()? else { return Ok(None) };
        let not_ours = || self.fail("this collection was not made by `retrieve index --store`; refusing to use it");
        let text = d.get("description").and_then(Value::as_str).ok_or_else(not_ours)?;
        let meta: Meta = serde_json::from_str(text).map_err(|_| not_ours())?;
        if meta.store != MARK {
            return Err(not_ours());
        }
        if meta.format != FORMAT {
            return Err(self.fail(format!("collection layout {} is not the one this version reads ({FORMAT})", meta.format)));
        }
        let vector_type = d.get("fields").and_then(Value::as_array).and_then(|fields| {
            fields.iter().find(|f| f.get("name").and_then(Value::as_str) == Some("vector")).and_then(|f| f.get("type")?.as_str())
        });
        if vector_type != Some(format!("FloatVector({})", meta.dim).as_str()) {
            return Err(self.fail(format!("the vector field is {vector_type:?}, but the collection records dimension {}", meta.dim)));
        }
        Ok(Some(meta))
    }

    /// The address.
    pub fn url(&self) -> &MilvusUrl {
        &self.url
    }

    /// Vector size.
    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Refuses vectors from another model than the one the collection was filled with.
    pub fn check_model(&self, fingerprint: &str, dim: usize) -> Result<()> {
        let m = &self.meta;
        if m.fingerprint != fingerprint || m.dim != dim {
            return Err(RetrieveError::ModelMismatch {
                path: self.url.to_string().into(),
                reason: format!(
                    "stored vectors come from model {} (dimension {}), not the loaded model {fingerprint} (dimension {dim}); \
                     search with that model, or index into a new collection",
                    m.fingerprint, m.dim
                ),
            });
        }
        Ok(())
    }

    /// Drops the remembered count after a write.
    fn forget_count(&self) {
        if let Ok(mut c) = self.counted.lock() {
            *c = None;
        }
    }

    /// Items stored (visible to reads now).
    pub fn count(&self) -> Result<usize> {
        let body = json!({"collectionName": self.url.collection, "filter": "id >= 0", "outputFields": ["count(*)"], "limit": 0});
        let data = self.call("POST", "/v1/vector/query", Some(&body), Retry::Idempotent)?;
        let n = data.get(0).and_then(|r| r.get("count(*)")).and_then(id_of).ok_or_else(|| self.fail("count: unexpected answer"))?;
        let n = usize::try_from(n).map_err(|_| self.fail("count out of range"))?;
        if let Ok(mut c) = self.counted.lock() {
            *c = Some((Instant::now(), n));
        }
        Ok(n)
    }

    /// Stores `items` with `vectors` in batches, [`INSERTS_IN_FLIGHT`] requests at a time,
    /// calling `progress` with the rows of each acknowledged batch, and waits until reads see
    /// them. Answers the ids in item order. Sent over gRPC (REST when a token is set): this is
    /// the bulk load of `index --store` and `add`.
    pub fn insert(&self, items: &[NewItem], vectors: &[f32], progress: impl Fn(usize) + Sync) -> Result<Vec<u64>> {
        let transport = if self.token.is_some() { Transport::Rest } else { Transport::Grpc };
        self.insert_over(transport, items, vectors, progress)
    }

    fn insert_over(&self, transport: Transport, items: &[NewItem], vectors: &[f32], progress: impl Fn(usize) + Sync) -> Result<Vec<u64>> {
        let rows_per_batch = match transport {
            Transport::Rest => INSERT_ROWS,
            Transport::Grpc => GRPC_INSERT_ROWS,
        };
        let d = self.meta.dim;
        if vectors.len() != items.len() * d {
            return Err(RetrieveError::Invalid(format!("{} items but {} vector values (dimension {d})", items.len(), vectors.len())));
        }
        let batches = items.len().div_ceil(rows_per_batch);
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Vec<u64>>>> = (0..batches).map(|_| Mutex::new(None)).collect();
        let failure: Mutex<Option<RetrieveError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..INSERTS_IN_FLIGHT.min(batches) {
                s.spawn(|| loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || failure.lock().map_or(true, |f| f.is_some()) {
                        return;
                    }
                    let rows = b * rows_per_batch..((b + 1) * rows_per_batch).min(items.len());
                    let (items, vectors) = (&items[rows.clone()], &vectors[rows.start * d..rows.end * d]);
                    let stored = match transport {
                        Transport::Rest => self.insert_batch(items, vectors),
                        Transport::Grpc => self.insert_batch_grpc(items, vectors),
                    };
                    match stored {
                        Ok(ids) => {
                            progress(ids.len());
                            if let Ok(mut slot) = results[b].lock() {
                                *slot = Some(ids);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                });
            }
        });
        let results: Vec<Option<Vec<u64>>> = results.into_iter().map(|m| m.into_inner().ok().flatten()).collect();
        if let Some(e) = failure.into_inner().ok().flatten() {
            let stored: usize = results.iter().flatten().map(Vec::len).sum();
            return Err(self.fail(format!("{e}; {stored} of {} items were stored before the failure", items.len())));
        }
        let ids: Vec<u64> = results.into_iter().flatten().flatten().collect();
        if ids.len() != items.len() {
            return Err(self.fail(format!("the server acknowledged {} of {} items", ids.len(), items.len())));
        }
        // Reads see writes in timestamp order: once each batch's last item is visible, all are.
        let lasts: Vec<u64> = ids.chunks(rows_per_batch).filter_map(|c| c.last().copied()).collect();
        self.wait_until(&lasts, true)?;
        self.forget_count();
        Ok(ids)
    }

    fn insert_batch(&self, items: &[NewItem], vectors: &[f32]) -> Result<Vec<u64>> {
        #[derive(Serialize)]
        struct Row<'a> {
            vector: &'a [f32],
            sentence: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<&'a str>,
        }
        let d = self.meta.dim;
        let data: Vec<Row<'_>> = items
            .iter()
            .zip(vectors.chunks(d))
            .map(|(item, vector)| Row { vector, sentence: &item.text, key: item.key.as_deref() })
            .collect();
        let body = json!({"collectionName": self.url.collection, "data": data});
        let answer = self.call("POST", "/v1/vector/insert", Some(&body), Retry::ConnectOnly)?;
        let ids = answer.get("insertIds").and_then(Value::as_array).ok_or_else(|| self.fail("insert: no ids in the answer"))?;
        let ids: Option<Vec<u64>> = ids.iter().map(id_of).collect();
        let ids = ids.ok_or_else(|| self.fail("insert: an id is not an integer"))?;
        if ids.len() != items.len() {
            return Err(self.fail(format!("insert: {} ids for {} items", ids.len(), items.len())));
        }
        Ok(ids)
    }

    /// One gRPC `Insert` call: the vectors as a float-vector column, the sentence and key as
    /// the dynamic field's JSON, as the REST insert stores them. Sent again only when no
    /// connection was made (the server assigns ids, so a repeat would store twice).
    fn insert_batch_grpc(&self, items: &[NewItem], vectors: &[f32]) -> Result<Vec<u64>> {
        #[derive(Serialize)]
        struct Dynamic<'a> {
            sentence: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<&'a str>,
        }
        let dynamic: Vec<Vec<u8>> = items
            .iter()
            .map(|i| serde_json::to_vec(&Dynamic { sentence: &i.text, key: i.key.as_deref() }))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.fail(e.to_string()))?;
        let request = super::proto::insert_request(&self.url.collection, "vector", self.meta.dim, vectors, &dynamic);
        let (sent, tries) = retrying(Retry::ConnectOnly, |_| false, || super::grpc::call(&self.http, INSERT_METHOD, &request));
        let answer = match sent {
            Ok(answer) => answer,
            Err(Failure::Connect(e)) => return Err(self.fail(format!("cannot reach the Milvus server{tries}: {e}"))),
            Err(e) => return Err(self.fail(format!("gRPC insert: {e}{tries}"))),
        };
        let ids = super::proto::insert_ids(&answer).map_err(|e| self.fail(format!("gRPC insert: {e}")))?;
        if ids.len() != items.len() {
            return Err(self.fail(format!("gRPC insert: {} ids for {} items", ids.len(), items.len())));
        }
        Ok(ids)
    }

    /// Which of `ids` are stored (visible to reads now).
    fn present(&self, ids: &[u64]) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(ID_BATCH) {
            let body = json!({"collectionName": self.url.collection, "id": chunk, "outputFields": ["id"]});
            let data = self.call("POST", "/v1/vector/get", Some(&body), Retry::Idempotent)?;
            let rows = data.as_array().ok_or_else(|| self.fail("get: unexpected answer"))?;
            out.extend(rows.iter().filter_map(|r| r.get("id").and_then(id_of)));
        }
        Ok(out)
    }

    /// Waits until reads see all `ids` (`present`) or none of them.
    fn wait_until(&self, ids: &[u64], present: bool) -> Result<()> {
        let deadline = Instant::now() + VISIBLE_WITHIN;
        let mut pause = Duration::from_millis(10);
        loop {
            let seen = self.present(ids)?;
            if (present && seen.len() == ids.len()) || (!present && seen.is_empty()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let what = if present { "added items did not become searchable" } else { "removed items are still found" };
                return Err(self.fail(format!("{what} within {} s", VISIBLE_WITHIN.as_secs())));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Every stored item in id order, a page at a time: `(id, sentence, key, vector)`.
    pub fn for_each_page(&self, mut f: impl FnMut(Vec<(u64, String, Option<String>, Vec<f32>)>) -> Result<()>) -> Result<usize> {
        let expected = self.count()?;
        let (mut seen, mut after): (usize, Option<u64>) = (0, None);
        loop {
            let filter = after.map_or_else(|| "id >= 0".to_string(), |a| format!("id > {a}"));
            let body = json!({
                "collectionName": self.url.collection,
                "filter": filter,
                "outputFields": ["id", "sentence", "key", "vector"],
                "limit": PAGE_ROWS,
            });
            let data = self.call("POST", "/v1/vector/query", Some(&body), Retry::Idempotent)?;
            let rows = data.as_array().ok_or_else(|| self.fail("query: unexpected answer"))?;
            if rows.is_empty() {
                break;
            }
            let mut page = Vec::with_capacity(rows.len());
            for r in rows {
                let (id, vector) = self.parse_row(r)?;
                page.push((id, text(r, "sentence").unwrap_or_default(), text(r, "key"), vector));
            }
            page.sort_by_key(|p| p.0);
            after = page.last().map(|p| p.0);
            seen += page.len();
            f(page)?;
        }
        if seen != expected {
            return Err(
                self.fail(format!("read {seen} items page by page, but the collection counts {expected}: was it changed meanwhile?"))
            );
        }
        Ok(seen)
    }

    fn parse_row(&self, r: &Value) -> Result<(u64, Vec<f32>)> {
        let id = r.get("id").and_then(id_of).ok_or_else(|| self.fail("an answer row has no id"))?;
        let vector: Vec<f32> = r
            .get("vector")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
            .ok_or_else(|| self.fail(format!("item {id} came back without its vector")))?;
        if vector.len() != self.meta.dim {
            return Err(self.fail(format!("item {id} has a vector of {} values, not {}", vector.len(), self.meta.dim)));
        }
        Ok((id, vector))
    }

    /// Sends one request and answers its `data`. Milvus answers `{"code": 200, "data": ...}`, or
    /// another code with a message.
    fn call(&self, method: &str, path: &str, body: Option<&Value>, retry: Retry) -> Result<Value> {
        let bytes = body.map(serde_json::to_vec).transpose().map_err(|e| self.fail(e.to_string()))?;
        let server_error = |(code, _): &(u16, Vec<u8>)| *code >= 500 || *code == 429;
        let (sent, tries) = retrying(retry, server_error, || self.http.send(method, path, self.token.as_deref(), bytes.as_deref()));
        let (code, answer) = match sent {
            Ok(a) => a,
            Err(Failure::Connect(e)) => return Err(self.fail(format!("cannot reach the Milvus server{tries}: {e}"))),
            Err(e) => return Err(self.fail(format!("{method} {path}: {e}{tries}"))),
        };
        if !(200..300).contains(&code) {
            let text = String::from_utf8_lossy(&answer).chars().take(300).collect::<String>();
            return Err(self.fail(format!("{method} {path}: HTTP {code}{tries}: {text}")));
        }
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|e| self.fail(format!("{method} {path}: the answer is not JSON ({e}); is this a Milvus REST port?")))?;
        let code = answer.get("code").and_then(Value::as_i64);
        if matches!(code, Some(0 | 200)) {
            return Ok(answer.get("data").cloned().unwrap_or(Value::Null));
        }
        let message = answer.get("message").and_then(Value::as_str).unwrap_or("no message");
        Err(self.fail(format!("{message} (code {})", code.map_or_else(|| "none".into(), |c| c.to_string()))))
    }
}

/// Sends with `send` until it succeeds, fails for good or [`ATTEMPTS`] are spent, pausing
/// [`FIRST_PAUSE`], then twice as long each time, between attempts. A failed connection is always tried again (nothing was sent);
/// with [`Retry::Idempotent`] also a broken exchange and an answer `server_error` rejects.
/// Answers the last outcome and, after more than one attempt, " (tried N times)" for messages.
fn retrying<T>(
    retry: Retry,
    server_error: impl Fn(&T) -> bool,
    mut send: impl FnMut() -> std::result::Result<T, Failure>,
) -> (std::result::Result<T, Failure>, String) {
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        let sent = send();
        let again = match &sent {
            Ok(answer) => retry == Retry::Idempotent && server_error(answer),
            Err(Failure::Connect(_)) => true,
            Err(Failure::Io(_)) => retry == Retry::Idempotent,
            Err(Failure::Protocol(_)) => false,
        };
        if !again || attempt >= ATTEMPTS {
            let tries = if attempt > 1 { format!(" (tried {attempt} times)") } else { String::new() };
            return (sent, tries);
        }
        std::thread::sleep(pause);
        pause *= 2;
        attempt += 1;
    }
}

fn text(r: &Value, field: &str) -> Option<String> {
    r.get(field).and_then(Value::as_str).map(str::to_string)
}

impl Store for MilvusStore {
    fn location(&self) -> String {
        self.url.to_string()
    }

    fn item_count(&self) -> Result<Option<usize>> {
        // A recent count is good enough for health checks; a count is a query on the server.
        if let Ok(c) = self.counted.lock() {
            if let Some((at, n)) = *c {
                if at.elapsed() < Duration::from_secs(1) {
                    return Ok(Some(n));
                }
            }
        }
        self.count().map(Some)
    }

    fn writable(&self) -> bool {
        true
    }

    fn search_kind(&self) -> &'static str {
        "milvus"
    }

    fn search(&self, queries: &[f32], dim: usize, k: usize) -> Result<Vec<Vec<StoredHit>>> {
        if dim != self.meta.dim {
            return Err(RetrieveError::Invalid(format!("queries of dimension {dim} for a collection of dimension {}", self.meta.dim)));
        }
        if k > MAX_K {
            return Err(RetrieveError::Invalid(format!("k is at most {MAX_K} with Milvus")));
        }
        let one = |q: &[f32]| -> Result<Vec<StoredHit>> {
            let body = json!({
                "collectionName": self.url.collection,
                "vector": q,
                "limit": k,
                "outputFields": ["sentence", "key", "vector"],
            });
            let data = self.call("POST", "/v1/vector/search", Some(&body), Retry::Idempotent)?;
            let rows = data.as_array().ok_or_else(|| self.fail("search: unexpected answer"))?;
            rows.iter()
                .map(|r| {
                    let (id, vector) = self.parse_row(r)?;
                    let score = r.get("distance").and_then(Value::as_f64).ok_or_else(|| self.fail("search: a hit has no distance"))?;
                    Ok(StoredHit {
                        id,
                        key: text(r, "key"),
                        sentence: text(r, "sentence").unwrap_or_default(),
                        score: score as f32,
                        vector,
                    })
                })
                .collect()
        };
        // One request per query (the REST search takes one vector); a few at a time.
        let n = queries.len() / dim.max(1);
        let workers = n.clamp(1, 8);
        let next = AtomicUsize::new(0);
        let answers: Vec<Mutex<Option<Result<Vec<StoredHit>>>>> = (0..n).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let answer = one(&queries[i * dim..(i + 1) * dim]);
                    if let Ok(mut slot) = answers[i].lock() {
                        *slot = Some(answer);
                    }
                });
            }
        });
        answers.into_iter().map(|m| m.into_inner().ok().flatten().unwrap_or_else(|| Err(self.fail("a search worker failed")))).collect()
    }

    /// A server's adds are few rows each: REST, which also keeps that path in use.
    fn add(&self, items: Vec<NewItem>, vectors: &[f32]) -> Result<Vec<u64>> {
        self.insert_over(Transport::Rest, &items, vectors, |_| {})
    }

    fn delete(&self, ids: &[u64]) -> Result<Vec<u64>> {
        if let Some(bad) = ids.iter().find(|&&id| i64::try_from(id).is_err()) {
            return Err(RetrieveError::Invalid(format!("{bad} is not a Milvus id (ids are below 2^63)")));
        }
        let stored = self.present(ids)?;
        for chunk in stored.chunks(ID_BATCH) {
            let body = json!({"collectionName": self.url.collection, "id": chunk});
            self.call("POST", "/v1/vector/delete", Some(&body), Retry::Idempotent)?;
        }
        if !stored.is_empty() {
            self.wait_until(&stored, false)?;
            self.forget_count();
        }
        Ok(stored)
    }
}
