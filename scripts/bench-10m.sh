#!/usr/bin/env bash
# The approximate index at 10 million stored vectors (issue 16): synthetic clustered vectors
# (crates/bench/src/synthetic.rs), an i8 snapshot and its HNSW graph, through `annbench`.
#
#   scripts/bench-10m.sh [N]                 N stored vectors, default 10000000
#   BENCH_REUSE=1 scripts/bench-10m.sh [N]   measure again on the index the last run built
#
# Environment: BENCH_OUT (default runs/bench-10m), BENCH_DIM (default 128), BENCH_VECTORS (i8 or
# f32, default i8), BENCH_M (graph links per node), BENCH_EF_ADD (candidates while inserting),
# BENCH_CODES (the graph's copy of each vector: i8 or b1), BENCH_EF (candidates while searching);
# each defaults to the library's. Prints, and writes as JSON to BENCH_OUT/:
#   - build: time to generate, write the snapshot and build the graph; peak RSS; file sizes;
#   - measure, in a fresh process that opens the index as `retrieve serve` does: single-query
#     search latency p50/p90/p99 on one thread (no HTTP, no encoding: the vectors are
#     synthetic), recall@10 against exact search over the same stored vectors, RSS, disk.
# While building it holds every generated vector as f32 (N × dim × 4 bytes) beside the graph.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000000}"
OUT="${BENCH_OUT:-runs/bench-10m}"
BIN="${CARGO_TARGET_DIR:-target}/release"
GEN=(--dim "${BENCH_DIM:-128}")
mkdir -p "$OUT"

cargo build --release -p bench --bin annbench
echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ); N=$N"

IDX="$OUT/synthetic-$N.idx"
if [ -n "${BENCH_REUSE:-}" ] && [ -f "$IDX" ]; then
  echo "== reusing $IDX"
else
  # Only files this script made before are replaced.
  rm -f "$IDX" "$IDX.hnsw" "$IDX.hnsw.json" "$IDX.journal" "$IDX.lock"
  M=()
  [ -n "${BENCH_M:-}" ] && M+=(--connectivity "$BENCH_M")
  [ -n "${BENCH_EF_ADD:-}" ] && M+=(--expansion-add "$BENCH_EF_ADD")
  [ -n "${BENCH_CODES:-}" ] && M+=(--codes "$BENCH_CODES")
  /usr/bin/time -f "build: %e s wall, %M KiB peak RSS" \
    "$BIN/annbench" build --index "$IDX" --items "$N" --vectors "${BENCH_VECTORS:-i8}" "${M[@]}" "${GEN[@]}" > "$OUT/build.json"
  cat "$OUT/build.json"
fi
ls -l "$IDX"*
# The index was just written, so its pages are in the page cache, as on a server that has run
# for a while.
EF=()
[ -n "${BENCH_EF:-}" ] && EF=(--ef "$BENCH_EF")
"$BIN/annbench" measure --index "$IDX" "${EF[@]}" "${GEN[@]}" > "$OUT/measure.json"
cat "$OUT/measure.json"
echo "== disk: $(du -cb "$IDX"* | tail -1 | cut -f1) bytes"
