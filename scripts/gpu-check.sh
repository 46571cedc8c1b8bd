#!/usr/bin/env bash
# The GPU checks of issue 18 as one prepared run on a lent GPU machine (DEVELOPERS.md: build here,
# carry stripped, xz-compressed binaries, one short script per run, give the machine back).
#
#   scripts/gpu-check.sh pack     # here: build; put the stripped, compressed `bench` binary, the
#                                 # encoder's test binary and the benchmark data in runs/gpu/
#   scripts/gpu-check.sh run      # on the GPU machine, with runs/gpu carried
#
# `run` does, in order: the CubeCL kernel tests on the GPU (the tests CI runs on lavapipe: the
# kernels against the host operation, and the encoder for every pooling); then `bench` on wgpu,
# with the kernels and with the composed recurrence they replace (`--lstm composed`): training
# pairs/s at batch 64 and 512 (h = 128), encoding, and the LSTM's share of a training step; then,
# where torch imports, scripts/bench_torch.py on CUDA at the same two batch sizes.
# Everything it prints also goes to $OUT (the device tool's output folder) or runs/gpu/out.
# Budget: about 4 minutes once the binaries are unpacked (SECONDS_PER_RUN=5 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=runs/gpu

case "${1:-}" in
pack)
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/twin-lstm/target}"
  cargo build --release --workspace --bins
  # The encoder's unit-test binary: the executable cargo reports for the lib target.
  test_bin=$(cargo test --release --workspace --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "encoder" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])')
  [[ -n "$test_bin" ]] || { echo "gpu-check.sh: the encoder test binary was not found" >&2; exit 1; }
  mkdir -p "$PACK/data/qqp/bimpm_partition" "$PACK/emb"
  for bin in "$CARGO_TARGET_DIR/release/bench" "$test_bin"; do
    name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
    strip -o "$PACK/$name" "$bin"
    xz -T2 -6 -f "$PACK/$name"
  done
  DATA="${TWIN_DATA_DIR:-../shared/datasets}"
  EMB="${TWIN_EMBEDDINGS_DIR:-../shared/embeddings}"
  cp "$DATA/qqp/bimpm_partition/dev.tsv" "$PACK/data/qqp/bimpm_partition/"
  xz -T2 -6 -c "$EMB/glove.6B.50d.100k.txt" > "$PACK/emb/glove.6B.50d.100k.txt.xz"
  du -sh "$PACK"
  echo "carry runs/gpu (and nothing else); the tracked files plus it must stay under 64 MiB"
  ;;
run)
  out="${OUT:-$PACK/out}"
  mkdir -p "$out"
  exec > >(tee "$out/gpu-check.log") 2>&1
  secs="${SECONDS_PER_RUN:-5}"
  work=$(mktemp -d)
  for f in "$PACK"/*.xz; do xz -dc "$f" > "$work/$(basename "$f" .xz)"; chmod +x "$work/$(basename "$f" .xz)"; done
  mkdir -p "$work/emb"
  xz -dc "$PACK/emb/glove.6B.50d.100k.txt.xz" > "$work/emb/glove.6B.50d.100k.txt"
  echo "== $(date -u +%FT%TZ) $(nproc) cores; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
  echo "== kernel tests on this GPU"
  # A failure is reported, and the benchmarks still run: the run is too scarce to stop early.
  CI=true "$work/encoder" --test-threads 1 op::cube wgpu_encoder || echo "== THE KERNEL TESTS FAILED ON THIS GPU"
  # The kernels, then the composed recurrence they replace, with the same binary.
  for lstm in fused composed; do
    echo "== bench, wgpu, $lstm LSTM"
    for batch in 64 512; do
      "$work/bench" --data-dir "$PACK/data" --embeddings-dir "$work/emb" --backends wgpu --only train,split \
        --train-batch "$batch" --seconds "$secs" --threads none --lstm "$lstm" --json "$out/wgpu-$lstm-train-$batch.json"
    done
    "$work/bench" --data-dir "$PACK/data" --embeddings-dir "$work/emb" --backends wgpu --only encode \
      --seconds "$secs" --threads none --lstm "$lstm" --json "$out/wgpu-$lstm-encode.json"
  done
  if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    for batch in 64 512; do
      echo "== PyTorch cuDNN, batch $batch"
      python3 scripts/bench_torch.py --device cuda --skip-search --seconds "$secs" --batch-size "$batch" \
        --data-dir "$PACK/data" --embeddings-dir "$work/emb" --json "$out/torch-cuda-$batch.json"
    done
  else
    echo "== torch with CUDA is not importable here: no cuDNN comparison"
  fi
  rm -rf "$work"
  ;;
*)
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
