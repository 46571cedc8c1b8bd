#!/usr/bin/env bash
# Memory of `retrieve score` as the input grows: a QQP-layout file of N rows (the dev.tsv pairs
# repeated), scored with the default model; prints rows/s and the peak RSS (GNU time).
#
#   scripts/bench-score-memory.sh [ROWS ...]     (default: 20000 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${TWIN_DATA_DIR:-../shared/datasets}"
BIN="${CARGO_TARGET_DIR:-target}/release"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is needed for the peak RSS"; exit 1; }
cargo build --release --workspace --bins
src="$DATA/qqp/bimpm_partition/dev.tsv"
for rows in "${@:-20000 100000 1000000}"; do
  for n in $rows; do
    touch "$TMP/in.tsv"
    while [ "$(wc -l < "$TMP/in.tsv")" -lt "$n" ]; do cat "$src" >> "$TMP/in.tsv"; done
    head -n "$n" "$TMP/in.tsv" > "$TMP/rows.tsv"
    /usr/bin/time -f "%M %e" "$BIN/retrieve" score "$TMP/rows.tsv" --format qqp --quiet -o "$TMP/out.csv" 2> "$TMP/time.txt" >/dev/null || { cat "$TMP/time.txt"; exit 1; }
    read -r kib secs < <(tail -1 "$TMP/time.txt")
    echo "$n rows: peak RSS $((kib / 1024)) MiB, $secs s, $(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.0f", n/s}') rows/s, $(($(wc -l < "$TMP/out.csv") - 1)) rows written"
    rm -f "$TMP/out.csv"
  done
done
