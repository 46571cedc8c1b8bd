#!/usr/bin/env bash
# Rebuild the distillation data a training config's [distill] table names, in one command:
# the transfer set (the trainer's `transfer` binary: training sentences, other datasets'
# sentences, augmented copies; never an evaluation sentence), then the teacher's vectors of it
# (scripts/teacher-targets.sh: all-MiniLM-L6-v2 in a Python venv, offline).
#
#   scripts/distill-targets.sh configs/quora-distill.toml [--threads N] [--data-dir DIR] [--embeddings-dir DIR]
#
# With `model.extra_vectors` set, also the teacher's vectors of every GloVe word alone, reduced
# to GloVe's size (scripts/word_vectors.py), written there (plus .words, .f32 and .json beside).
# All files are data: written under runs/ (see the config), never committed. An existing
# vectors file is replaced only when its input changed (the teacher's .json side file records
# the SHA-256 of the sentences it encoded).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  [[ $# -lt 1 ]] && exit 2 || exit 0
fi
config="$1"
shift
threads=2
pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --data-dir | --embeddings-dir) pass+=("$1" "$2"); shift 2 ;;
    *) echo "distill-targets.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-target}/release/transfer"
paths="$("$bin" --config "$config" --print-paths)"
sentences="$(sed -n 's/^sentences=//p' <<<"$paths")"
targets="$(sed -n 's/^targets=//p' <<<"$paths")"
extra="$(sed -n 's/^extra_vectors=//p' <<<"$paths")"
glove="$(sed -n 's/^glove=//p' <<<"$paths")"

# The value of key $2 in the JSON file $1 (empty when absent).
json_field() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"
}

# The teacher's vectors of the lines of $1, into $2, unless $2 already holds them.
teach() {
  local input="$1" output="$2"
  if [[ -f "$output" && -f "$output.json" ]]; then
    local have want
    have="$(json_field "$output.json" input_sha256)"
    want="$(sha256sum < "$input" | cut -d' ' -f1)"
    if [[ "$have" == "$want" ]]; then
      echo "distill-targets.sh: $output already holds the teacher's vectors of $input" >&2
      return 0
    fi
  fi
  # --force only over an earlier teacher output (it has the side file); anything else stays.
  local force=()
  [[ -f "$output.json" ]] && force=(--force)
  scripts/teacher-targets.sh --input "$input" --output "$output" --threads "$threads" "${force[@]}"
}

"$bin" --config "$config" "${pass[@]}"
teach "$sentences" "$targets"

# model.extra_vectors: the teacher's vectors of each GloVe word alone, reduced to GloVe's size
# (scripts/word_vectors.py, in the teacher's venv).
if [[ -n "$extra" ]]; then
  py="${TWIN_TEACHER_VENV:-$HOME/.cache/twin-lstm/teacher-venv}/bin/python"
  mkdir -p "$(dirname "$extra")"
  "$py" scripts/word_vectors.py --glove "$glove" --list-words "$extra.words"
  teach "$extra.words" "$extra.f32"
  if [[ -f "$extra" && -f "$extra.json" ]] \
    && [[ "$(json_field "$extra.json" teacher_payload_sha256)" == "$(json_field "$extra.f32.json" payload_sha256)" ]]; then
    echo "distill-targets.sh: $extra is up to date" >&2
    exit 0
  fi
  force=()
  [[ -f "$extra.json" ]] && force=(--force)
  "$py" scripts/word_vectors.py --glove "$glove" --teacher "$extra.f32" --output "$extra" "${force[@]}"
fi
