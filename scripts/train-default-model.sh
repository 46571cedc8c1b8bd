#!/usr/bin/env bash
# Rebuild the shipped default model package (models/quora) exactly as it was made: the same
# config (configs/quora-bimax-head.toml: seeds, split, vocabulary, GloVe init) and the same
# trainer.
#
#   scripts/train-default-model.sh [--data-dir DIR] [--embeddings-dir DIR]
#
# Data: ../shared/datasets/qqp/bimpm_partition/dev.tsv and ../shared/embeddings/glove.6B.50d.100k.txt
# by default (scripts/fetch-data.sh fetches them). The retrieve cache of datasets/questions.txt is
# rebuilt automatically on the next query, since the model fingerprint changes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p trainer --bin train -- --config configs/quora-bimax-head.toml --output models/quora "$@"
