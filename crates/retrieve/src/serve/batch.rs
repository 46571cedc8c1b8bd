//! Search batching: the searches that arrive within a short window share one encoder batch.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{api, internal, ApiError, AppState};
use crate::SearchReport;

/// Searches waiting for a batching worker; past this, a search is answered 503.
pub(super) const QUEUE: usize = 4096;

/// One search waiting for its batch.
pub(super) struct Job {
    pub(super) queries: Vec<String>,
    pub(super) k: usize,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<SearchReport, ApiError>>,
}

/// Gathers the searches that arrive within a window and answers them from one encoder batch.
///
/// Workers (one per core) share the queue; the first job a worker takes opens a window, and the
/// jobs that arrive before it closes (or until the batch is full) join it. Each worker holds a
/// weak reference to the state, so the workers end with the server.
pub(super) struct Batcher;

/// Most queries in one batch.
const BATCH_QUERIES: usize = 256;

impl Batcher {
    pub(super) fn start(state: &Arc<AppState>, rx: mpsc::Receiver<Job>, window: Duration) {
        let rx = Arc::new(Mutex::new(rx));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..workers {
            let (rx, weak) = (rx.clone(), Arc::downgrade(state));
            std::thread::spawn(move || {
                while let Some(jobs) = Self::gather(&rx, window) {
                    let Some(state) = weak.upgrade() else { return };
                    // A panic answers its batch's clients (their senders drop: 500), not the
                    // worker's later batches.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::answer(&state, jobs)));
                }
            });
        }
    }

    /// The next batch: blocks for a first job, then takes what arrives within `window`.
    /// `None` once the server is gone.
    fn gather(rx: &Mutex<mpsc::Receiver<Job>>, window: Duration) -> Option<Vec<Job>> {
        let rx = rx.lock().ok()?;
        let first = rx.recv().ok()?;
        let deadline = Instant::now() + window;
        let mut n = first.queries.len();
        let mut jobs = vec![first];
        while n < BATCH_QUERIES {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            match rx.recv_timeout(left) {
                Ok(job) => {
                    n += job.queries.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        Some(jobs)
    }

    fn answer(state: &AppState, jobs: Vec<Job>) {
        let texts: Vec<&str> = jobs.iter().flat_map(|j| j.queries.iter().map(String::as_str)).collect();
        let d = state.embedder.dim();
        let vectors = state.embedder.embed(&texts).map_err(internal);
        let mut at = 0;
        for job in jobs {
            let n = job.queries.len();
            let result = match &vectors {
                Ok(v) => {
                    SearchReport::from_store(&state.embedder, &*state.store, &job.queries, &v[at * d..(at + n) * d], job.k).map_err(api)
                }
                Err(e) => Err(ApiError(e.0, e.1.clone())),
            };
            at += n;
            // The client may have gone; nothing to do then.
            let _ = job.reply.send(result);
        }
    }
}
