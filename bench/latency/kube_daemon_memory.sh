#!/bin/bash
# The daemon at scale through --source kube: resident memory, time to ready and the initial
# compile + apply, against the test API server serving a generated cluster.
#
#   sudo bench/latency/kube_daemon_memory.sh [BUILD_DIR] [PODS] [NAMESPACES] [POLICIES]
#   (defaults: build 100000 5000 10000)
#
# Runs in a network namespace of its own (unshare -n: the daemon's routes and the server's
# loopback port stay there) with a per-run bpffs pin directory, removed at the end.
set -euo pipefail
if [ "${SLUICE_IN_NETNS:-}" != 1 ]; then
  exec env SLUICE_IN_NETNS=1 unshare -n "$0" "$@"
fi
B=$(realpath "${1:-build}")
PODS=${2:-100000}
NS=${3:-5000}
POL=${4:-10000}
ip link set lo up
OUT=$(mktemp -d /tmp/sluice-kube-mem-XXXXXX)
PIN=/sys/fs/bpf/sluice-kube-mem-$$
API=""
D=""
cleanup() {
  [ -n "$D" ] && kill -TERM "$D" 2>/dev/null && wait "$D" 2>/dev/null || true
  [ -n "$API" ] && kill -TERM "$API" 2>/dev/null || true
  rm -rf "$PIN" "$OUT"
}
trap cleanup EXIT
mkfifo "$OUT/api.in"
"$B/tests/source/sluice-test-apiserver" --pods "$PODS" --namespaces "$NS" --policies "$POL" \
  --node node-a <"$OUT/api.in" >"$OUT/api.out" 2>"$OUT/api.err" &
API=$!
exec 3>"$OUT/api.in"  # the server runs until its stdin closes
for _ in $(seq 1 1200); do [ -s "$OUT/api.out" ] && break; sleep 0.1; done
URL=$(head -1 "$OUT/api.out")
[ -n "$URL" ] || { echo "test API server did not start" >&2; cat "$OUT/api.err" >&2; exit 1; }
cat >"$OUT/kubeconfig" <<K
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$URL"}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
K
mkdir -p "$OUT/state"
START=$(date +%s%N)
"$B/policyd/daemon/sluice-policyd" --node-name node-a --source kube --kubeconfig "$OUT/kubeconfig" \
  --socket "$OUT/policyd.sock" --state-dir "$OUT/state" --bpf-pin-dir "$PIN" >"$OUT/daemon.log" 2>&1 &
D=$!
for _ in $(seq 1 1200); do [ -e "$OUT/state/ready" ] && break; sleep 0.05; done
[ -e "$OUT/state/ready" ] || { echo "daemon not ready after 60 s" >&2; tail "$OUT/daemon.log" >&2; exit 1; }
READY=$(date +%s%N)
sleep 3  # let the first sync's frees settle
echo "kube source: $PODS pods / $NS namespaces / $POL policies"
echo "ready after $(((READY - START) / 1000000)) ms (lists + initial compile + apply)"
grep -o 'mode=full .*compile_ms=[0-9.]* apply_ms=[0-9.]*' "$OUT/daemon.log" | head -1
grep -E 'VmRSS|VmHWM' "/proc/$D/status"
