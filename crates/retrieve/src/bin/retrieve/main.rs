//! `retrieve`: nearest stored questions, duplicate verdicts, indexing, dedup and CSV scoring.
//!
//! `main.rs` dispatches; `cli` holds the flags, `context` what every command shares, and
//! `modify`, `query` and `files` the commands.

mod cli;
mod context;
mod files;
mod modify;
mod query;

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use retrieve::StoreUrl;

use cli::{Cli, Command};

fn main() -> ExitCode {
    fsio::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = cli.common.clone();
    match cli.command {
        None => query::run_search(&common, &cli.search),
        Some(Command::Search(args)) => query::run_search(&common, &args),
        Some(Command::Index { file, column, index, store, graph, graph_links, graph_candidates, graph_codes, vectors }) => {
            let graph_params = retrieve::AnnParams {
                connectivity: graph_links as usize,
                expansion_add: graph_candidates as usize,
                codes: graph_codes,
                ..Default::default()
            };
            modify::run_index(&common, file, column, index, store, modify::Layout { graph, graph_params, vectors })
        }
        Some(Command::Add { file, column, index, store, key_column }) => modify::run_add(&common, file, column, index, store, key_column),
        Some(Command::Delete { ids, index, store }) => modify::run_delete(ids, index, store),
        Some(Command::Compact { index }) => modify::run_compact(&common, index),
        Some(Command::Dedup { file, column, store, threshold, output }) => {
            let source = match (file, store) {
                (_, Some(StoreUrl::Milvus(url))) => files::DedupSource::Milvus(url),
                (Some(file), _) | (None, Some(StoreUrl::Local(file))) => files::DedupSource::File(file),
                (None, None) => bail!("give a FILE or --store milvus://HOST:PORT/COLLECTION"),
            };
            files::run_dedup(&common, &source, column.as_deref(), threshold, output)
        }
        Some(Command::Score { file, output, columns, format, strict, batch_rows }) => {
            files::run_score(&common, &file, output, columns, format, strict, batch_rows as usize)
        }
        #[cfg(feature = "serve")]
        Some(Command::Serve { index, store, addr, token, max_k, max_batch, max_body_bytes, search, ef, batch_window_us }) => {
            let options = retrieve::serve::ServeOptions {
                max_body_bytes: max_body_bytes as usize,
                max_k: max_k as usize,
                max_batch: max_batch as usize,
                token,
                batch_window: std::time::Duration::from_micros(batch_window_us),
            };
            let target = match (index, store) {
                (None, None) => None,
                (index, store) => Some(cli::target(index, store)?),
            };
            query::run_serve(&common, target, &cli.search.corpus, addr, options, search, ef)
        }
    }
}
