#!/usr/bin/env bash
# Fetch the public datasets and GloVe vectors this project trains and evaluates on, into the
# layout the configs expect (default ../shared, i.e. --data-dir ../shared/datasets and
# --embeddings-dir ../shared/embeddings). None of these files may be committed: each has its own
# licence (Quora's terms of service, CC-BY, Microsoft's research licence, PDDL for GloVe).
#
#   scripts/fetch-data.sh [TARGET_DIR]      # default: ../shared
set -euo pipefail

target="${1:-../shared}"
data="$target/datasets"
emb="$target/embeddings"
mkdir -p "$data/qqp/bimpm_partition" "$data/sick" "$data/stsbenchmark" "$data/mrpc" "$emb"

gh() { # gh REPO COMMIT PATH DEST
  curl -fsSL --retry 3 -o "$4" "https://raw.githubusercontent.com/$1/$2/$3"
  echo "fetched $4"
}

# Quora Question Pairs, BiMPM partition (dev and test; train.tsv is large, fetch it the same way).
BIMPM=galsang/BIMPM-pytorch@17f3735716437622904508797ea2724e9d0dcafc
gh "${BIMPM%@*}" "${BIMPM#*@}" .data/quora/dev.tsv "$data/qqp/bimpm_partition/dev.tsv"
gh "${BIMPM%@*}" "${BIMPM#*@}" .data/quora/test.tsv "$data/qqp/bimpm_partition/test.tsv"

# SICK (full file with the SemEval_set column).
gh kkalouli/SICK-processing 0848f4aec60870122a4ca18de08ba0e25f6f9a75 SICK.txt "$data/sick/SICK.txt"

# STS Benchmark.
for f in sts-train.csv sts-dev.csv sts-test.csv; do
  gh oborchers/Fast_Sentence_Embeddings e92261ab5a64ee8fc754bec5a2882ab83bcd0384 "evaluation/$f" "$data/stsbenchmark/$f"
done

# MRPC: the train file is the dataset-sts train + validation split joined back together.
DSTS=brmson/dataset-sts
DSTS_COMMIT=e1d3375f5b3bc24f21aa4e46f96eb379e9fc1081
tmp=$(mktemp -d)
gh $DSTS $DSTS_COMMIT data/para/msr/msr-para-train.tsv "$tmp/train.tsv"
gh $DSTS $DSTS_COMMIT data/para/msr/msr-para-val.tsv "$tmp/val.tsv"
gh $DSTS $DSTS_COMMIT data/para/msr/msr-para-test.tsv "$data/mrpc/msr_paraphrase_test.txt"
{ cat "$tmp/train.tsv"; tail -n +2 "$tmp/val.tsv"; } > "$data/mrpc/msr_paraphrase_train.txt"
rm -rf "$tmp"

# GloVe 6B, 50 dimensions, the 100k most frequent words.
if [ ! -f "$emb/glove.6B.50d.100k.txt" ]; then
  tmp=$(mktemp -d)
  curl -fSL --retry 3 -o "$tmp/glove.6B.zip" https://nlp.stanford.edu/data/glove.6B.zip
  unzip -p "$tmp/glove.6B.zip" glove.6B.50d.txt | head -n 100000 > "$emb/glove.6B.50d.100k.txt"
  rm -rf "$tmp"
  echo "fetched $emb/glove.6B.50d.100k.txt"
fi
echo "done: train with --data-dir $data --embeddings-dir $emb"
