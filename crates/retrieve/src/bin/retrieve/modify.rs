//! Commands that change an index or a Milvus collection: `index`, `add`, `delete`, `compact`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use fsio::{check_output, escape_terminal, warn};
use retrieve::store::MilvusUrl;
use retrieve::{corpus, Ann, AnnParams, Index, MilvusStore, NewItem, SearchMode, Store, StoreUrl, VectorKind};

use crate::cli::{target, Common, Target};
use crate::context::{bar, build_graph, load_embedder, lock_index};

/// How `retrieve index` lays out a new local index.
pub(crate) struct Layout {
    /// Whether to build the search graph.
    pub(crate) graph: SearchMode,
    /// The graph's settings.
    pub(crate) graph_params: AnnParams,
    /// How the snapshot stores vectors.
    pub(crate) vectors: VectorKind,
}

/// `retrieve index FILE`: a new index (or, with `--store milvus://…`, a new collection).
pub(crate) fn run_index(
    common: &Common,
    file: PathBuf,
    column: Option<String>,
    index: Option<PathBuf>,
    store: Option<StoreUrl>,
    layout: Layout,
) -> anyhow::Result<()> {
    let index = match store {
        Some(StoreUrl::Milvus(url)) => return run_index_milvus(common, &file, column.as_deref(), &url),
        Some(StoreUrl::Local(p)) => Some(p),
        None => index,
    };
    let out = index.unwrap_or_else(|| file.with_extension("idx"));
    check_output(&out, &[&file])?;
    if out.exists() && Index::read_header(&out).is_err() {
        bail!("{}: exists and is not an index; refusing to replace it (choose another --index)", out.display());
    }
    let embedder = load_embedder(common)?;
    let sentences = corpus::read_sentences(&file, column.as_deref())?;
    let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
    let mut idx = corpus::build_index(&embedder, sentences, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    idx.header.source_hash = Some(corpus::file_hash(&file)?);
    idx.header.vectors = layout.vectors;
    let _lock = lock_index(&out)?;
    idx.create(&out)?;
    if layout.graph.uses_graph(idx.len()) {
        build_graph(common, &out, &idx, layout.graph_params)?;
    }
    warn!("indexed {} sentences into {}", idx.len(), escape_terminal(&out.display().to_string()));
    Ok(())
}

/// `retrieve add FILE`: appends to an index's journal (or inserts into a collection).
pub(crate) fn run_add(
    common: &Common,
    file: PathBuf,
    column: Option<String>,
    index: Option<PathBuf>,
    store: Option<StoreUrl>,
    key_column: Option<String>,
) -> anyhow::Result<()> {
    let target = target(index, store)?;
    let embedder = load_embedder(common)?;
    // Fail fast on the wrong model (or an unreachable store), before embedding anything.
    let milvus = match &target {
        Target::Local(index) => {
            check_output(index, &[&file])?;
            let header = Index::read_header(index)?;
            retrieve::index::check_model(&header, index, &embedder.package.fingerprint, embedder.dim())?;
            None
        }
        Target::Milvus(url) => {
            let store = MilvusStore::open(url)?;
            store.check_model(&embedder.package.fingerprint, embedder.dim())?;
            Some(store)
        }
    };
    let sentences = corpus::read_sentences(&file, column.as_deref())?;
    let keys = match &key_column {
        Some(k) => corpus::read_sentences(&file, Some(k))?.into_iter().map(Some).collect(),
        None => vec![None; sentences.len()],
    };
    if keys.len() != sentences.len() {
        bail!("{}: {} sentences but {} keys", file.display(), sentences.len(), keys.len());
    }
    let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let vectors = embedder.embed_with_progress(&texts, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let items: Vec<NewItem> = sentences.into_iter().zip(keys).map(|(text, key)| NewItem { text, key }).collect();
    let index = match (target, milvus) {
        (Target::Milvus(url), Some(store)) => {
            let pb = bar(common.quiet, Some(items.len() as u64), "storing");
            let ids = store.insert(&items, &vectors, |n| pb.inc(n as u64))?;
            pb.finish_and_clear();
            warn!("added {} sentences{}; {url} now holds {}", ids.len(), id_range(&ids), store.count()?);
            return Ok(());
        }
        (Target::Local(index), _) => index,
        (Target::Milvus(_), None) => unreachable!("opened above"),
    };
    // Appended to the journal under the index's lock, after taking in what other
    // writers appended, so concurrent adds each get their own ids and none is lost.
    let _lock = lock_index(&index)?;
    let mut idx = Index::load(&index)?;
    idx.check_model(&index, &embedder.package.fingerprint, embedder.dim())?;
    let ids = idx.append(&index, items, &vectors)?;
    warn!("added {} sentences{}; {} now holds {}", ids.len(), id_range(&ids), escape_terminal(&index.display().to_string()), idx.len());
    Ok(())
}

/// `retrieve delete ID…`: removes items by id.
pub(crate) fn run_delete(ids: Vec<u64>, index: Option<PathBuf>, store: Option<StoreUrl>) -> anyhow::Result<()> {
    let index = match target(index, store)? {
        Target::Local(index) => index,
        Target::Milvus(url) => {
            let store = MilvusStore::open(&url)?;
            let removed = store.delete(&ids)?;
            let missing: Vec<String> = ids.iter().filter(|i| !removed.contains(i)).map(u64::to_string).collect();
            warn!("removed {} items; {url} now holds {}", removed.len(), store.count()?);
            if !missing.is_empty() {
                bail!("no item with id {} in {url}", missing.join(", "));
            }
            return Ok(());
        }
    };
    let _lock = lock_index(&index)?;
    let mut idx = Index::load(&index)?;
    let removed = idx.delete(&index, &ids)?;
    let missing: Vec<String> = ids.iter().filter(|i| !removed.contains(i)).map(u64::to_string).collect();
    warn!("removed {} items; {} now holds {}", removed.len(), escape_terminal(&index.display().to_string()), idx.len());
    if !missing.is_empty() {
        bail!("no item with id {} in {}", missing.join(", "), index.display());
    }
    Ok(())
}

/// `retrieve compact`: folds the journal into a new snapshot and refreshes the graph.
pub(crate) fn run_compact(common: &Common, index: PathBuf) -> anyhow::Result<()> {
    let _lock = lock_index(&index)?;
    let mut idx = Index::load(&index)?;
    idx.compact(&index)?;
    if SearchMode::Auto.uses_graph(idx.len()) || Ann::path_for(&index).exists() {
        // The graph is rebuilt as it was built.
        build_graph(common, &index, &idx, Ann::saved_params(&index).unwrap_or_default())?;
    }
    warn!("compacted {}: {} items", escape_terminal(&index.display().to_string()), idx.len());
    Ok(())
}

/// `(ids a..=b)` for a message about added items.
fn id_range(ids: &[u64]) -> String {
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) => format!(" (ids {a}..={b})"),
        _ => String::new(),
    }
}

/// `retrieve index FILE --store milvus://…`: a new collection filled from a sentence file
/// (embedded here) or from a local index (its vectors copied).
fn run_index_milvus(common: &Common, file: &Path, column: Option<&str>, url: &MilvusUrl) -> anyhow::Result<()> {
    // Before embedding anything: the server answers and the collection is new.
    MilvusStore::check_absent(url)?;
    let (fingerprint, dim, items, vectors) = if file.extension().is_some_and(|e| e == "idx") {
        let idx = Index::load(file)?;
        let (vectors, live) = idx.live_vectors();
        let items: Vec<NewItem> =
            live.iter().map(|&r| NewItem { text: idx.sentence(r).to_string(), key: idx.key(r).map(str::to_string) }).collect();
        (idx.header.fingerprint.clone(), idx.dim(), items, vectors.into_owned())
    } else {
        let embedder = load_embedder(common)?;
        let sentences = corpus::read_sentences(file, column)?;
        let pb = bar(common.quiet, Some(sentences.len() as u64), "embedding");
        let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let vectors = embedder.embed_with_progress(&texts, |n| pb.inc(n as u64))?;
        pb.finish_and_clear();
        let items = sentences.into_iter().map(|text| NewItem { text, key: None }).collect();
        (embedder.package.fingerprint.clone(), embedder.dim(), items, vectors)
    };
    let store = MilvusStore::create(url, &fingerprint, dim)?;
    let pb = bar(common.quiet, Some(items.len() as u64), "storing");
    let started = Instant::now();
    let ids = store.insert(&items, &vectors, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    warn!("stored {} items in {url} in {secs:.1} s ({:.0} vectors/s, until searchable)", ids.len(), ids.len() as f64 / secs.max(1e-9));
    Ok(())
}
