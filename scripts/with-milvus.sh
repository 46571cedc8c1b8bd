#!/usr/bin/env bash
# Runs a command next to a real Milvus standalone server, then stops the server.
#
#   scripts/with-milvus.sh COMMAND [ARGS...]
#
# The server is PyPI's `milvus` 2.3.5, installed once into a venv kept with the build cache
# ($HOME/.cache/twin-lstm/milvus-venv). It listens on every interface, so it runs in a network
# namespace of its own that has only a loopback device (no other machine can reach it), and
# COMMAND runs in the same namespace with TWIN_MILVUS=127.0.0.1:19530. Its data lives in a
# temporary directory removed afterwards; the server is stopped by its process group however
# this script ends. Needs root (ip netns) and python3 with venv.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARGS...]"; exit 2; }

MILVUS_VENV="$HOME/.cache/twin-lstm/milvus-venv"
if [ ! -x "$MILVUS_VENV/bin/milvus-server" ]; then
  python3 -m venv "$MILVUS_VENV"
  "$MILVUS_VENV/bin/pip" install -q "milvus==2.3.5"
fi

NS="twin-milvus-$$"
ip netns add "$NS"
MILVUS_DATA="$(mktemp -d "${TMPDIR:-/tmp}/twin-milvus.XXXXXX")"
MILVUS_PID=""
stop_milvus() {
  if [ -n "$MILVUS_PID" ] && [ "$MILVUS_PID" -gt 1 ]; then
    kill -TERM -- "-$MILVUS_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 -- "-$MILVUS_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$MILVUS_PID" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$MILVUS_DATA"
}
trap stop_milvus EXIT
ip netns exec "$NS" ip link set lo up
# setsid: the server (a Python launcher and the milvus binary it starts) is one process group.
setsid ip netns exec "$NS" "$MILVUS_VENV/bin/milvus-server" --data "$MILVUS_DATA" >"$MILVUS_DATA/server.log" 2>&1 &
MILVUS_PID=$!
ready=""
for _ in $(seq 1 120); do
  if ip netns exec "$NS" python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9091/healthz", timeout=2)' 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$MILVUS_PID" 2>/dev/null || break
  sleep 1
done
if [ -z "$ready" ]; then
  echo "Milvus did not start; its log:"
  tail -50 "$MILVUS_DATA/server.log" || true
  exit 1
fi
echo "Milvus is up (namespace $NS, data $MILVUS_DATA)" >&2
ip netns exec "$NS" env TWIN_MILVUS=127.0.0.1:19530 "$@"
