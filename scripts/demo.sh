#!/usr/bin/env bash
# The main job: installs dependencies, builds, then
#  1. the offline dry-run: `sluicectl matrix` / `explain` on manifests/examples,
#  2. the local demo: a simulated two-node cluster (network namespaces, one sluice-policyd each,
#     pods wired by the sluice CNI plugin), printing the reachability sluicectl predicts beside
#     the one measured with real packets, then tearing it all down.
# Run as root on Debian 12.
#
#   scripts/demo.sh [--datapath bpf|nft]     (or SLUICE_DATAPATH=nft; default bpf)
set -euo pipefail
cd "$(dirname "$0")/.."

datapath="${SLUICE_DATAPATH:-bpf}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --datapath) datapath="${2:?--datapath needs bpf or nft}"; shift 2 ;;
    --datapath=*) datapath="${1#--datapath=}"; shift ;;
    *) echo "usage: scripts/demo.sh [--datapath bpf|nft]" >&2; exit 2 ;;
  esac
done
case "$datapath" in
  bpf|nft) ;;
  *) echo "scripts/demo.sh: --datapath: want bpf or nft, got \"$datapath\"" >&2; exit 2 ;;
esac

if [[ "${SLUICE_SKIP_INSTALL:-0}" != 1 ]]; then
  scripts/install-deps.sh
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j"$(nproc)"

if [[ -x scripts/demo-dryrun.sh ]]; then
  echo "===================== dry run: sluicectl on manifests/examples ====================="
  SLUICECTL=build/policyd/ctl/sluicectl scripts/demo-dryrun.sh
fi

echo
echo "============ simulated cluster ($datapath datapath): predicted vs measured ============"
build/e2e/demo/sluice-demo --datapath "$datapath" --probe 80/TCP --probe 5432/TCP --probe 53/UDP e2e/demo/scenario
