#!/usr/bin/env bash
# Dry-run tour of the demo cluster in manifests/examples: reachability matrices, two explained
# verdicts (one allowed, one denied) and a lint pass. No cluster, no root needed.
#   scripts/demo-dryrun.sh [path/to/sluicectl]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ctl="${1:-${SLUICECTL:-}}"
if [[ -z "$ctl" ]]; then
  for c in "$here"/build*/policyd/ctl/sluicectl; do
    [[ -x "$c" ]] && { ctl="$c"; break; }
  done
fi
[[ -n "$ctl" && -x "$ctl" ]] || { echo "sluicectl not found; build it or pass its path" >&2; exit 2; }
ex="$here/manifests/examples"

run() {
  echo "\$ sluicectl $*"
  "$ctl" "$@" || echo "(exit status $?)"
  echo
}

run matrix -f "$ex" --port http
run matrix -f "$ex" --port 5432
run explain -f "$ex" --from dev/client --to prod/web --port http
run explain -f "$ex" --from dev/client --to prod/db --port 5432
run explain -f "$ex" --from prod/web --to 1.1.1.1 --port 443 -o json
run lint -f "$ex"
