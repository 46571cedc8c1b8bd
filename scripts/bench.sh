#!/usr/bin/env bash
# Benchmark harness: training pairs/s (and the LSTM's share of a step), encoding sentences/s, peak
# memory and exact search QPS (crates/bench), the same workloads through PyTorch/faiss when they
# are importable, and the wall time of `retrieve "query"` against a 20,000-question index.
#
#   scripts/bench.sh [extra bench options, e.g. --backends ndarray,flex,wgpu --seconds 30]
#
# Data: ../shared/datasets/qqp/bimpm_partition/dev.tsv and ../shared/embeddings/glove.6B.50d.100k.txt
# by default (TWIN_DATA_DIR / TWIN_EMBEDDINGS_DIR override; scripts/fetch-data.sh fetches them).
# Results go to runs/bench/ (ours.json, torch.json). PYTHON picks the interpreter that has torch
# (and faiss-cpu), e.g. PYTHON=.venv/bin/python after `pip install torch faiss-cpu numpy` there.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${TWIN_DATA_DIR:-../shared/datasets}"
EMB="${TWIN_EMBEDDINGS_DIR:-../shared/embeddings}"
OUT="${BENCH_OUT:-runs/bench}"
BIN="${CARGO_TARGET_DIR:-target}/release"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"

cargo build --release --workspace --bins
echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ)"

compare=()
if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)'), 2 threads"
  "$PY" scripts/bench_torch.py --data-dir "$DATA" --embeddings-dir "$EMB" --threads 2 --json "$OUT/torch.json"
  compare=(--compare "$OUT/torch.json")
else
  echo "== PyTorch is not importable by $PY: the PyTorch/faiss comparison is skipped"
fi

echo "== ours"
"$BIN/bench" --data-dir "$DATA" --embeddings-dir "$EMB" --json "$OUT/ours.json" "${compare[@]}" "$@"

echo "== retrieve \"query\" against a 20,000-question index (wall time from process start)"
cut -f2,3 "$DATA/qqp/bimpm_partition/dev.tsv" | tr '\t' '\n' | awk 'NF && !seen[$0]++' | head -n 20000 > "$OUT/questions20k.txt"
# The shipped default model (or TWIN_MODEL): encoding time of the whole file, per sentence.
start=$(date +%s%N)
"$BIN/retrieve" index "$OUT/questions20k.txt" --index "$OUT/questions20k.idx" --quiet
ms=$(( ($(date +%s%N) - start) / 1000000 ))
n=$(wc -l < "$OUT/questions20k.txt")
echo "shipped model ${TWIN_MODEL:-models/quora}: index $n questions in ${ms} ms (load, encode, write): $(( n * 1000 / (ms > 0 ? ms : 1) )) sentences/s"
times=()
for _ in 1 2 3 4 5 6 7; do
  start=$(date +%s%N)
  "$BIN/retrieve" --index "$OUT/questions20k.idx" --quiet "How can I improve my English speaking?" >/dev/null
  times+=($(( ($(date +%s%N) - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "retrieve over $(wc -l < "$OUT/questions20k.txt") questions: runs ${sorted}ms, median $(printf '%s\n' "${times[@]}" | sort -n | sed -n 4p) ms"
