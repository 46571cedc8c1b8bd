#!/usr/bin/env bash
# Serving benchmark: `retrieve serve` over many stored questions, exact against approximate.
#
#   scripts/bench-serve.sh [N]        N stored questions, default 1000000
#   BENCH_REUSE=1 scripts/bench-serve.sh   measure again on the index the last run built
#
# The stored questions are the unique questions of ../shared/datasets/qqp/bimpm_partition/dev.tsv
# (TWIN_DATA_DIR overrides) and deterministic rewrites of them (a word dropped, a prefix added),
# N in all, every one embedded by the shipped model (or TWIN_MODEL). Every 40th question is held
# out with all its rewrites and serves as a query. Prints, and writes to runs/bench-serve/:
#   - index build: wall time and peak RSS of `retrieve index --graph approx`, disk size;
#   - serve (graph search): RSS after load and after the load runs, single-client latency
#     p50/p99 (encode + search + HTTP, 1 client, 10 s), throughput with 32 clients (15 s);
#   - serve (exact search): single-client latency;
#   - recall@10 of graph search against exact search over the held-out queries.
# Servers listen on 127.0.0.1 only and are stopped by PID; every load run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
DATA="${TWIN_DATA_DIR:-../shared/datasets}"
OUT="${BENCH_OUT:-runs/bench-serve}"
BIN="${CARGO_TARGET_DIR:-target}/release"
PORT="${BENCH_PORT:-18731}"
mkdir -p "$OUT"

cargo build --release --workspace --bins
echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ); N=$N"

rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }

if [ -n "${BENCH_REUSE:-}" ] && [ -f "$OUT/big.idx" ]; then
  echo "== reusing $OUT/big.idx ($(wc -l < "$OUT/corpus.txt") stored questions)"
else
python3 - "$DATA/qqp/bimpm_partition/dev.tsv" "$N" "$OUT/corpus.txt" "$OUT/queries.txt" <<'PY'
import sys
src, n, corpus, queries = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
seen, qs = set(), []
for line in open(src, encoding="utf-8"):
    f = line.rstrip("\n").split("\t")
    for q in f[1:3]:
        q = " ".join(q.split())
        if q and q not in seen:
            seen.add(q)
            qs.append(q)
held = qs[::40]
stored = [q for i, q in enumerate(qs) if i % 40]
prefixes = ["", "Can you tell me", "I wonder", "Quick question :", "Please explain :", "Does anyone know", "Honestly ,",
            "In your opinion ,", "Serious question :", "Help :", "Curious :", "Asking again :"]
def variants(q):
    w = q.split()
    for p in prefixes:
        for d in range(-1, len(w)):
            ws = w if d < 0 else w[:d] + w[d + 1:]
            yield (p + " " + " ".join(ws)).strip()
out, have, held_set = [], set(), set(held)
gens = [variants(q) for q in stored]
while len(out) < n and gens:
    alive = []
    for g in gens:
        for v in g:
            if v not in have and v not in held_set:
                have.add(v)
                out.append(v)
                break
        else:
            continue
        alive.append(g)
        if len(out) >= n:
            break
    gens = alive
open(corpus, "w", encoding="utf-8").write("\n".join(out) + "\n")
open(queries, "w", encoding="utf-8").write("\n".join(held) + "\n")
print(f"corpus: {len(out)} stored questions from {len(stored)} originals; {len(held)} held-out queries")
PY

echo "== retrieve index --graph approx"
/usr/bin/time -v "$BIN/retrieve" index "$OUT/corpus.txt" --index "$OUT/big.idx" --graph approx --quiet 2> "$OUT/index.time"
grep -E "Elapsed|Maximum resident" "$OUT/index.time"
du -h "$OUT/big.idx" "$OUT/big.idx.hnsw" | sed 's/^/disk: /'
fi

serve() { # serve MODE: starts a server, waits until it listens
  "$BIN/retrieve" serve --index "$OUT/big.idx" --search "$1" --addr "127.0.0.1:$PORT" --quiet 2> "$OUT/serve-$1.log" &
  SERVER=$!
  for _ in $(seq 1 600); do
    grep -q "listening on" "$OUT/serve-$1.log" 2>/dev/null && return 0
    kill -0 "$SERVER" 2>/dev/null || { cat "$OUT/serve-$1.log"; return 1; }
    sleep 0.5
  done
  echo "server did not start"; return 1
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=; }
SERVER=
trap '[ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null; true' EXIT

echo "== serve --search approx"
serve approx
echo "rss after load: $(rss "$SERVER")"
"$BIN/loadgen" --addr "127.0.0.1:$PORT" --queries "$OUT/queries.txt" --clients 1 --duration 10 --k 10 --json | tee "$OUT/approx-1.json"
"$BIN/loadgen" --addr "127.0.0.1:$PORT" --queries "$OUT/queries.txt" --clients 32 --duration 15 --k 10 --json | tee "$OUT/approx-32.json"
echo "rss after load runs: $(rss "$SERVER"), peak $(hwm "$SERVER")"
stop

echo "== serve --search exact"
serve exact
echo "rss after load: $(rss "$SERVER")"
"$BIN/loadgen" --addr "127.0.0.1:$PORT" --queries "$OUT/queries.txt" --clients 1 --duration 10 --k 10 --json | tee "$OUT/exact-1.json"
stop

echo "== recall@10, graph against exact, over the held-out queries"
mapfile -t Q < <(head -n 300 "$OUT/queries.txt")
"$BIN/retrieve" search --index "$OUT/big.idx" --search exact -k 10 --json --quiet "${Q[@]}" > "$OUT/exact.json"
"$BIN/retrieve" search --index "$OUT/big.idx" --search approx -k 10 --json --quiet "${Q[@]}" > "$OUT/approx.json"
python3 scripts/recall.py "$OUT/exact.json" "$OUT/approx.json" id
