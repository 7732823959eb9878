#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test: unit tests (release and ASan+UBSan) and the
# privileged e2e suites (network namespaces, veths, eBPF). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ "${SLUICE_SKIP_INSTALL:-0}" != 1 ]]; then
  scripts/install-deps.sh
fi
jobs=$(nproc)

# Kubernetes for the --source kube suites (kube-apiserver) and the real-node suite e2e.node (the
# rest, and the static pause binary of its sandbox image): built once from Debian's kubernetes
# source package and cached under /var/cache/sluice (minutes the first time on a machine, then
# instant).
echo "== Kubernetes components (cached build)"
SLUICE_KUBE_BIN_DIR=$(scripts/build-kube.sh kube-apiserver kube-controller-manager kube-scheduler \
  kubelet kubectl pause)
export SLUICE_KUBE_BIN_DIR

echo "== build (release, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j"$jobs"

echo "== build (ASan+UBSan, unit tests only)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON \
  -DSLUICE_UNIT_ONLY=ON >/dev/null
ninja -C build-asan -j"$jobs"

status=0
echo "== unit tests (ASan+UBSan)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -L unit --output-on-failure -j"$jobs") || status=1

echo "== unit, privileged and e2e tests (release)"
(cd build && ctest -LE bench --output-on-failure --timeout 900) || status=1

exit $status
