//! Commands that answer questions: `search`, and `serve` (search, verdicts and adds over HTTP).

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::bail;
#[cfg(feature = "serve")]
use anyhow::Context;
#[cfg(feature = "serve")]
use fsio::warn;
use retrieve::{LocalStore, MilvusStore, SearchMode, SearchReport, Store, StoreUrl};

#[cfg(feature = "serve")]
use crate::cli::Target;
use crate::cli::{Common, SearchArgs};
#[cfg(feature = "serve")]
use crate::context::lock_index;
use crate::context::{load_embedder, load_index, open_graph};

/// `retrieve search` (or a query without a command): the top k of each query, rendered as
/// text or JSON.
pub(crate) fn run_search(common: &Common, args: &SearchArgs) -> anyhow::Result<()> {
    let (queries, k, index, corpus_path) = (&args.query, args.k, args.index.as_deref(), args.corpus.as_path());
    if queries.is_empty() {
        bail!("give a question to look up, e.g. retrieve \"How do I learn Rust?\" (see --help)");
    }
    if let Some(i) = queries.iter().position(|q| q.trim().is_empty()) {
        bail!("query {} is empty", i + 1);
    }
    let embedder = load_embedder(common)?;
    let store: Box<dyn Store> = match (index, &args.store) {
        (None, Some(StoreUrl::Milvus(url))) => {
            let store = MilvusStore::open(url)?;
            store.check_model(&embedder.package.fingerprint, embedder.dim())?;
            Box::new(store)
        }
        (_, local) => {
            let index = index.or(match local {
                Some(StoreUrl::Local(p)) => Some(p.as_path()),
                _ => None,
            });
            let idx = load_index(common, &embedder, index, corpus_path)?;
            let ann = match index {
                Some(p) if args.search.uses_graph(idx.len()) => open_graph(common, p, &idx, args.search == SearchMode::Approx, args.ef)?,
                _ => None,
            };
            Box::new(LocalStore::new(idx, ann, index.map(Path::to_path_buf), None))
        }
    };
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let qv = embedder.embed(&texts)?;
    let report = SearchReport::from_store(&embedder, &*store, queries, &qv, usize::try_from(k).unwrap_or(usize::MAX))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if common.json {
        report.write_json(&mut out)?;
    } else {
        report.write_text(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(feature = "serve")]
/// `retrieve serve`: loads the model and the store once and serves until SIGTERM.
pub(crate) fn run_serve(
    common: &Common,
    target: Option<Target>,
    corpus: &Path,
    addr: std::net::SocketAddr,
    options: retrieve::serve::ServeOptions,
    search: SearchMode,
    ef: Option<u64>,
) -> anyhow::Result<()> {
    if retrieve::serve::needs_token(&addr) && options.token.is_none() {
        bail!("{addr} is not a loopback address: give --token (or TWIN_SERVE_TOKEN) so that only your clients get in");
    }
    let embedder = load_embedder(common)?;
    let store: Box<dyn Store> = match target {
        Some(Target::Milvus(url)) => {
            let store = MilvusStore::open(&url)?;
            store.check_model(&embedder.package.fingerprint, embedder.dim())?;
            Box::new(store)
        }
        Some(Target::Local(path)) => {
            // Opened under the writers' lock, so that a compaction elsewhere is seen whole or
            // not at all.
            let lock = lock_index(&path)?;
            let idx = load_index(common, &embedder, Some(&path), corpus)?;
            let ann = if search.uses_graph(idx.len()) { open_graph(common, &path, &idx, true, ef)? } else { None };
            drop(lock);
            Box::new(LocalStore::new(idx, ann, Some(path), ef.map(|e| e as usize)))
        }
        None => Box::new(LocalStore::new(load_index(common, &embedder, None, corpus)?, None, None, None)),
    };
    let state = retrieve::serve::AppState::new(embedder, store, options);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        warn!("listening on http://{} (POST /search, /score, /items; GET /health, /metrics)", listener.local_addr()?);
        retrieve::serve::serve(listener, state, retrieve::serve::shutdown_signal()).await?;
        warn!("stopped");
        anyhow::Ok(())
    })
}
