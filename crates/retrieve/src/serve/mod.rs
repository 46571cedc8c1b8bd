//! `retrieve serve`: search, pair verdicts and adds over HTTP (axum on tokio), with the model and
//! the index loaded once.
//!
//! Every `retrieve` call loads the model and reads the whole index; a help desk asking once per
//! new question, from many clients, wants them loaded once. The API speaks JSON:
//!
//! - `POST /search {"queries": [...], "k": 5}`: the [`SearchReport`] the CLI prints with `--json`;
//! - `POST /score {"pairs": [["a", "b"], ...]}`: similarity, verdict (and the head's probability);
//! - `POST /items {"items": ["text", {"text": "...", "key": "..."}]}`: appends items to the
//!   index's journal (under its writers' lock) and answers with their ids only once they are
//!   synced, so an acknowledged add survives a crash or a `SIGTERM`;
//! - `DELETE /items/{id}`: removes an item, durably in the same way;
//! - `GET /health`, `GET /metrics` (Prometheus text: requests by route and status, latency
//!   histograms).
//!
//! Encoding and search run on worker threads, never on the async workers. Searches that arrive
//! within a short window are embedded and searched together ([`Batcher`]): one encoder batch
//! instead of many small ones, which is where the cores go under load. Bodies, `k` and
//! batch sizes are bounded; a bad request gets a 4xx JSON `{"error": …}` that says what is wrong.
//! The server listens on 127.0.0.1 unless told otherwise, and refuses any other address without
//! a bearer token. `SIGTERM` or Ctrl-C stops accepting, lets requests in flight finish, and exits.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use encoder::Embedder;
use serde::{Deserialize, Serialize};

use crate::{NewItem, RetrieveError, SearchReport, Store};
use batch::{Batcher, Job, QUEUE};
use metrics::Metrics;

mod batch;
mod metrics;

/// Limits and access of a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest `k` of a search.
    pub max_k: usize,
    /// Most queries, pairs or items in one request.
    pub max_batch: usize,
    /// Required as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// How long a search waits for others to batch with; zero: each request alone.
    pub batch_window: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { max_body_bytes: 1 << 20, max_k: 100, max_batch: 1000, token: None, batch_window: Duration::from_millis(1) }
    }
}

/// Whether `addr` may be served without a token: loopback only.
pub fn needs_token(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// What the handlers share: the model, the store, the limits, the request metrics, and the
/// search batcher.
pub struct AppState {
    embedder: Embedder,
    store: Box<dyn Store>,
    options: ServeOptions,
    metrics: Metrics,
    batcher: Option<mpsc::SyncSender<Job>>,
    /// Bounds the searches that run at once without the batcher (the graph keeps scratch space
    /// for a fixed number).
    unbatched: tokio::sync::Semaphore,
}

impl AppState {
    /// A server's state over `store` (a local index, or a Milvus collection). With a batch
    /// window, starts the batching workers.
    pub fn new(embedder: Embedder, store: Box<dyn Store>, options: ServeOptions) -> Arc<Self> {
        let window = options.batch_window;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let state = Arc::new(Self {
            embedder,
            store,
            options,
            metrics: Metrics::default(),
            batcher: (!window.is_zero()).then_some(tx),
            unbatched: tokio::sync::Semaphore::new(crate::ann::slots() / 2),
        });
        if !window.is_zero() {
            Batcher::start(&state, rx, window);
        }
        state
    }
}

/// The application: routes, limits, auth and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.options.max_body_bytes;
    Router::new()
        .route("/search", post(search))
        .route("/score", post(score))
        .route("/items", post(add_items))
        .route("/items/{id}", delete(delete_item))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Resolves on `SIGTERM` or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// `Json` whose rejections are JSON errors too (400 for malformed JSON or fields, 413 for an
/// oversized body, 415 without a JSON content type), each saying what is wrong.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(rejection(r)),
        }
    }
}

fn rejection(r: JsonRejection) -> ApiError {
    ApiError(r.status(), r.body_text())
}

/// Checks the bearer token and counts every request by route and status.
async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = match &state.options.token {
        Some(token) if !authorised(req.headers(), token) => {
            ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer TOKEN)".into()).into_response()
        }
        _ => next.run(req).await,
    };
    state.metrics.record(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

fn authorised(headers: &HeaderMap, token: &str) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) == Some(token)
}

async fn not_found(req: Request) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}; see GET /health, /metrics, POST /search, /score, /items, DELETE /items/ID",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Runs `f` on the blocking pool (encoding and search are CPU work).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))?
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A library error: the request's fault (400) when the input cannot be used as asked, 503 when
/// the store cannot answer now (a Milvus server down), else 500.
pub(crate) fn api(e: RetrieveError) -> ApiError {
    match e {
        RetrieveError::Invalid(msg) => ApiError::bad(msg),
        e @ RetrieveError::Store { .. } => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        other => internal(other),
    }
}

/// Non-empty, at most `max` entries, no blank sentence.
fn check_batch(what: &str, texts: &[&str], max: usize) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::bad(format!("{what}: give at least one")));
    }
    if texts.len() > max {
        return Err(ApiError::bad(format!("{what}: {} given, at most {max} per request", texts.len())));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::bad(format!("{what}[{i}] is empty")));
    }
    Ok(())
}

/// `POST /search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The questions to look up.
    pub queries: Vec<String>,
    /// Hits per query (default 5).
    #[serde(default = "five")]
    pub k: usize,
}

fn five() -> usize {
    5
}

async fn search(State(state): State<Arc<AppState>>, Json(req): Json<SearchRequest>) -> Result<axum::Json<SearchReport>, ApiError> {
    let texts: Vec<&str> = req.queries.iter().map(String::as_str).collect();
    check_batch("queries", &texts, state.options.max_batch)?;
    if req.k == 0 || req.k > state.options.max_k {
        return Err(ApiError::bad(format!("k must be between 1 and {}", state.options.max_k)));
    }
    let Some(batcher) = &state.batcher else {
        let _permit = state.unbatched.acquire().await.map_err(internal)?;
        let state = state.clone();
        return blocking(move || {
            let texts: Vec<&str> = req.queries.iter().map(String::as_str).collect();
            let qv = state.embedder.embed(&texts).map_err(|e| api(e.into()))?;
            SearchReport::from_store(&state.embedder, &*state.store, &req.queries, &qv, req.k).map(axum::Json).map_err(api)
        })
        .await;
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    batcher.try_send(Job { queries: req.queries, k: req.k, reply }).map_err(|e| match e {
        mpsc::TrySendError::Full(_) => ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many searches waiting; retry shortly".into()),
        mpsc::TrySendError::Disconnected(_) => ApiError(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping".into()),
    })?;
    answer.await.map_err(|_| internal("a search worker failed"))?.map(axum::Json)
}

/// `POST /score`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// Sentence pairs.
    pub pairs: Vec<(String, String)>,
}

/// The verdict on one pair.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PairVerdict {
    /// The energy's similarity.
    pub similarity: f64,
    /// The package's verdict on the pair (the head's, for packages with one).
    pub is_duplicate: bool,
    /// The head's probability, for packages with a head.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duplicate_probability: Option<f32>,
}

async fn score(State(state): State<Arc<AppState>>, Json(req): Json<ScoreRequest>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let max = state.options.max_batch;
    if req.pairs.is_empty() || req.pairs.len() > max {
        return Err(ApiError::bad(format!("pairs: {} given, give 1 to {max}", req.pairs.len())));
    }
    if let Some(i) = req.pairs.iter().position(|(a, b)| a.trim().is_empty() || b.trim().is_empty()) {
        return Err(ApiError::bad(format!("pairs[{i}] has an empty sentence")));
    }
    blocking(move || {
        let texts: Vec<&str> = req.pairs.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
        let e = &state.embedder;
        let vecs = e.embed(&texts).map_err(internal)?;
        let d = e.dim();
        let row = |i: usize| &vecs[i * d..(i + 1) * d];
        let n = req.pairs.len();
        let probabilities = e.head_probabilities(n, |k| (row(2 * k), row(2 * k + 1)));
        let energy = e.package.config.energy;
        let results: Vec<PairVerdict> = (0..n)
            .map(|k| {
                let distance = f64::from(energy.distance_host(row(2 * k), row(2 * k + 1)));
                let p = probabilities.as_ref().map(|(p, _)| p[k]);
                PairVerdict {
                    similarity: energy.similarity_from_distance(distance),
                    is_duplicate: e.package.is_duplicate(distance, p),
                    duplicate_probability: p,
                }
            })
            .collect();
        Ok(axum::Json(serde_json::json!({ "results": results })))
    })
    .await
}

/// `POST /items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// Items to store: sentences, or `{"text": ..., "key": ...}` objects.
    pub items: Vec<AddItem>,
}

/// One item of `POST /items`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AddItem {
    /// Just the sentence.
    Text(String),
    /// The sentence and the caller's key.
    Keyed(NewItem),
}

impl AddItem {
    fn into_item(self) -> NewItem {
        match self {
            AddItem::Text(text) => NewItem { text, key: None },
            AddItem::Keyed(item) => item,
        }
    }
}

fn writable(state: &AppState) -> Result<(), ApiError> {
    if state.store.writable() {
        return Ok(());
    }
    Err(ApiError(StatusCode::CONFLICT, "this server searches a cached corpus; start it with --index FILE to add or remove items".into()))
}

async fn add_items(State(state): State<Arc<AppState>>, Json(req): Json<AddRequest>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let items: Vec<NewItem> = req.items.into_iter().map(AddItem::into_item).collect();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    check_batch("items", &texts, state.options.max_batch)?;
    writable(&state)?;
    blocking(move || {
        let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
        let vectors = state.embedder.embed(&texts).map_err(|e| api(e.into()))?;
        // The store serializes writers (a local index: its file's writers' lock, then its
        // in-process lock) and answers once the items are durable and searchable.
        let ids = state.store.add(items, &vectors).map_err(api)?;
        let total = state.store.item_count().map_err(api)?;
        Ok(axum::Json(serde_json::json!({ "ids": ids, "total": total })))
    })
    .await
}

/// `DELETE /items/{id}`.
async fn delete_item(State(state): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad(format!("item id {id:?} is not a non-negative integer")))?;
    writable(&state)?;
    blocking(move || {
        if state.store.delete(&[id]).map_err(api)?.is_empty() {
            return Err(ApiError(StatusCode::NOT_FOUND, format!("no item with id {id}")));
        }
        let total = state.store.item_count().map_err(api)?;
        Ok(axum::Json(serde_json::json!({ "removed": id, "total": total })))
    })
    .await
}

async fn health(State(state): State<Arc<AppState>>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    // A local index's lock may be held by a writer, and a remote store answers over the
    // network: off the async workers.
    blocking(move || {
        let items = state.store.item_count().map_err(api)?;
        Ok(axum::Json(serde_json::json!({
            "status": "ok",
            "items": items,
            "search": state.store.search_kind(),
            "store": state.store.location(),
            "model": state.embedder.package.dir.display().to_string(),
            "fingerprint": state.embedder.package.fingerprint,
        })))
    })
    .await
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_goes_without_a_token() {
        assert!(!needs_token(&"127.0.0.1:8080".parse().unwrap()));
        assert!(!needs_token(&"[::1]:8080".parse().unwrap()));
        assert!(needs_token(&"0.0.0.0:8080".parse().unwrap()));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorised(&h, "s3cret") && !authorised(&h, "other") && !authorised(&HeaderMap::new(), "s3cret"));
    }
}
