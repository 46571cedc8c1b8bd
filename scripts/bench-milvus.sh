#!/usr/bin/env bash
# Milvus benchmark: the 1M stored questions of scripts/bench-serve.sh bulk-loaded into Milvus,
# then searched through `retrieve serve --store`, side by side with the local graph index.
#
#   scripts/bench-milvus.sh            (after scripts/bench-serve.sh, whose index it copies)
#
# Starts its own Milvus through scripts/with-milvus.sh unless TWIN_MILVUS=HOST:PORT names one.
# Prints, and writes to runs/bench-milvus/:
#   - bulk load: `retrieve index big.idx --store milvus://…` (vectors copied, not re-embedded):
#     wall time, vectors/s until searchable, peak RSS of retrieve, RSS of the Milvus server;
#   - serve --store milvus: single-client latency p50/p99 (10 s) and 32 clients (15 s), each run
#     once right after the load and once after a pause for Milvus to index the sealed segments;
#   - recall@10 of Milvus against local exact search over 300 held-out queries.
# Servers listen on 127.0.0.1 only (Milvus in its own network namespace) and stop by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TWIN_MILVUS:-}" ]; then
  exec scripts/with-milvus.sh "$0" "$@"
fi
SERVE_OUT="${BENCH_SERVE_OUT:-runs/bench-serve}"
OUT="${BENCH_OUT:-runs/bench-milvus}"
BIN="${CARGO_TARGET_DIR:-target}/release"
PORT="${BENCH_PORT:-18732}"
PAUSE="${BENCH_PAUSE:-120}"
mkdir -p "$OUT"
[ -f "$SERVE_OUT/big.idx" ] || { echo "no $SERVE_OUT/big.idx: run scripts/bench-serve.sh first"; exit 1; }
CARGO_NET_OFFLINE=true cargo build --release --workspace --bins
echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ); Milvus at $TWIN_MILVUS"

rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }
milvus_rss() { ps -C milvus -o rss= | awk '{s+=$1} END {printf "%.0f MiB", s/1024}'; }
URL="milvus://$TWIN_MILVUS/bench_$(date +%s)"

echo "== retrieve index $SERVE_OUT/big.idx --store $URL"
/usr/bin/time -v "$BIN/retrieve" index "$SERVE_OUT/big.idx" --store "$URL" --quiet 2> "$OUT/index.log"
grep -E "stored|Elapsed|Maximum resident" "$OUT/index.log"
echo "milvus rss after load: $(milvus_rss)"

SERVER=
trap '[ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null; true' EXIT
"$BIN/retrieve" serve --store "$URL" --addr "127.0.0.1:$PORT" --quiet 2> "$OUT/serve.log" &
SERVER=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$OUT/serve.log" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 0.5
done
load() { # load TAG
  "$BIN/loadgen" --addr "127.0.0.1:$PORT" --queries "$SERVE_OUT/queries.txt" --clients 1 --duration 10 --k 10 --json | tee "$OUT/$1-1.json"
  "$BIN/loadgen" --addr "127.0.0.1:$PORT" --queries "$SERVE_OUT/queries.txt" --clients 32 --duration 15 --k 10 --json | tee "$OUT/$1-32.json"
}
echo "== serve --store (right after the load)"
load fresh
echo "== pause ${PAUSE}s (Milvus builds its index on sealed segments in the background)"
sleep "$PAUSE"
echo "== serve --store (after the pause)"
load settled
echo "retrieve serve rss: $(rss "$SERVER"); milvus rss: $(milvus_rss)"
kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=

echo "== recall@10, Milvus against local exact, over the held-out queries"
mapfile -t Q < <(head -n 300 "$SERVE_OUT/queries.txt")
[ -f "$SERVE_OUT/exact.json" ] || "$BIN/retrieve" search --index "$SERVE_OUT/big.idx" --search exact -k 10 --json --quiet "${Q[@]}" > "$SERVE_OUT/exact.json"
"$BIN/retrieve" search --store "$URL" -k 10 --json --quiet "${Q[@]}" > "$OUT/milvus.json"
python3 scripts/recall.py "$SERVE_OUT/exact.json" "$OUT/milvus.json" sentence
