#!/usr/bin/env bash
# Rebuild the distillation data a training config's [distill] table names, in one command:
# the transfer set (the trainer's `transfer` binary: training sentences, other datasets'
# sentences, augmented copies; never an evaluation sentence), then the teacher's vectors of it
# (scripts/teacher-targets.sh: all-MiniLM-L6-v2 in a Python venv, offline).
#
#   scripts/distill-targets.sh configs/quora-distill.toml [--threads N] [--data-dir DIR] [--embeddings-dir DIR]
#
# Both files are data: written under runs/ (see the config), never committed. An existing
# vectors file is replaced only when the transfer set changed (the teacher's .json side file
# records the SHA-256 of the sentences it encoded).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
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

"$bin" --config "$config" "${pass[@]}"
if [[ -f "$targets" && -f "$targets.json" ]]; then
  have="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("input_sha256",""))' "$targets.json")"
  want="$(sha256sum < "$sentences" | cut -d' ' -f1)"
  if [[ "$have" == "$want" ]]; then
    echo "distill-targets.sh: $targets already holds the teacher's vectors of $sentences" >&2
    exit 0
  fi
fi
# --force only over an earlier teacher output (it has the side file); anything else stays.
force=()
[[ -f "$targets.json" ]] && force=(--force)
exec scripts/teacher-targets.sh --input "$sentences" --output "$targets" --threads "$threads" "${force[@]}"
