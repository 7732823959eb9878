#!/usr/bin/env bash
# Installs every build and test dependency of Sluice on Debian 12. Idempotent.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: must run as root (apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  build-essential g++ cmake ninja-build pkg-config git ca-certificates \
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev \
  libnl-3-dev libnl-route-3-dev libmnl-dev libnftnl-dev nftables \
  nlohmann-json3-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev \
  libcurl4-openssl-dev libyaml-cpp-dev libssl-dev openssl \
  iproute2 iputils-ping procps util-linux kmod iperf3 \
  containernetworking-plugins python3 \
  etcd-server etcd-client curl \
  librsvg2-bin libxml2-utils libpng-dev \
  containerd runc busybox-static iptables
# bpffs is needed by the daemon's pinned maps; mount it if the host did not.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf || echo "install-deps.sh: could not mount bpffs (continuing)" >&2
fi
