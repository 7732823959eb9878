#!/usr/bin/env bash
# sluicectl scale benchmark: generates two synthetic dumps and times
#   explain on 100,000 pods / 5,000 namespaces / 10,000 policies   (target < 2 s)
#   matrix  on 1,000 pods (1,000,000 pairs) with 500 policies       (target < 10 s)
# Each figure is the best of RUNS wall-clock runs (the VM is shared), with CPU time and the
# ratio to its target (< 1.00 meets it).
#   bench/scale/run.sh [path/to/sluicectl]      env: RUNS=3 WORK=/tmp/sluice-scale KEEP=1
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ctl="${1:-${SLUICECTL:-}}"
if [[ -z "$ctl" ]]; then
  for c in "$root"/build*/policyd/ctl/sluicectl; do
    [[ -x "$c" ]] && { ctl="$c"; break; }
  done
fi
[[ -n "$ctl" && -x "$ctl" ]] || { echo "sluicectl not found; build it or pass its path" >&2; exit 2; }
runs="${RUNS:-3}"
work="${WORK:-$(mktemp -d /tmp/sluice-scale.XXXXXX)}"
mkdir -p "$work"
[[ -n "${KEEP:-}" || -n "${WORK:-}" ]] || trap 'rm -rf "$work"' EXIT

gen() {  # name pods namespaces policies
  local f="$work/$1.json"
  if [[ ! -s "$f" ]]; then
    python3 "$here/gen_dump.py" --pods "$2" --namespaces "$3" --policies "$4" -o "$f.tmp"
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}

# best_of LABEL TARGET_SECONDS CMD...: runs CMD $runs times (stdout discarded), prints the best.
best_of() {
  local label="$1" target="$2"; shift 2
  local best="" cpu="" t
  for ((i = 0; i < runs; i++)); do
    if ! /usr/bin/time -o "$work/time.txt" -f '%e %U %S' "$@" >/dev/null 2>"$work/stderr.txt"; then
      echo "FAILED: $*" >&2; cat "$work/stderr.txt" >&2; exit 1
    fi
    read -r wall user sys <"$work/time.txt"
    if [[ -z "$best" ]] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
      best="$wall"; cpu="$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')"
    fi
  done
  awk -v l="$label" -v w="$best" -v c="$cpu" -v t="$target" 'BEGIN{
    printf "%-46s %6.2f s wall (cpu %5.2f s)   target %4.1f s   ratio %.2f  %s\n",
           l, w, c, t, w / t, (w < t ? "OK" : "OVER") }'
}

echo "generating dumps in $work ..."
big="$(gen big 100000 5000 10000)"
mat="$(gen matrix 1000 20 500)"
# Endpoints that exist in the big dump: the first pods of two namespaces, by name and by IP.
from="$(python3 - "$big" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))["items"]
pods = [i for i in items if i["kind"] == "Pod"]
print(pods[7]["metadata"]["namespace"] + "/" + pods[7]["metadata"]["name"])
PY
)"
echo "sluicectl: $ctl"
echo "explain dump: $(du -h "$big" | cut -f1) (100,000 pods, 5,000 namespaces, 10,000 policies)"
echo "matrix dump:  $(du -h "$mat" | cut -f1) (1,000 pods, 20 namespaces, 500 policies)"
echo "best of $runs runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
best_of "explain (100k pods, 10k policies, named port)" 2 \
  "$ctl" explain -f "$big" --from "$from" --to 10.0.0.9 --port http -o json
best_of "explain (100k pods, 10k policies, ipBlock dst)" 2 \
  "$ctl" explain -f "$big" --from "$from" --to 192.0.2.1 --port 443
best_of "matrix -o json (1,000 pods x 500 policies)" 10 \
  "$ctl" matrix -f "$mat" --port 8080 -o json
best_of "matrix text (1,000 pods x 500 policies)" 10 \
  "$ctl" matrix -f "$mat" --port http
