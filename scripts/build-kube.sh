#!/usr/bin/env bash
# Builds Kubernetes components (default: kube-apiserver) from Debian's `kubernetes` source
# package, offline, and caches the binaries outside the checkout:
#   /var/cache/sluice/kubernetes-<source version>/bin/<component>
# A later run (CI on the same machine) finds them there and builds nothing. Prints the bin dir.
#
#   scripts/build-kube.sh [kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
#                          pause ...]
#
# `pause` is the sandbox binary of the tree's build/pause, linked statically with gcc (no Go), so a
# one-file image holds it (scripts/build-images.sh).
#
# Facts this relies on (Debian 12): the source package is the full upstream 1.20.2 tree with
# vendor/; it builds in GOPATH mode through its own `make WHAT=cmd/...` (which generates a required
# openapi file) with golang-1.19; its vendored modern-go/reflect2 1.0.1 breaks on Go >= 1.18 and is
# replaced by Debian's 1.0.2; `apt-get source` needs a deb-src entry for the mirror in use.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  echo "build-kube.sh: must run as root (apt-get)" >&2
  exit 1
fi
components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(kube-apiserver)
cache="${SLUICE_CACHE:-/var/cache/sluice}"
export DEBIAN_FRONTEND=noninteractive

# deb-src for the mirror this machine already uses (taken from its deb822 or one-line sources).
if ! apt-cache showsrc kubernetes >/dev/null 2>&1 || [[ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]]; then
  mirror=$(grep -rhoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    grep -v security | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  cat >/etc/apt/sources.list.d/sluice-src.sources <<EOF
Types: deb-src
URIs: ${mirror%/}
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -q >/dev/null
fi
version=$(apt-cache showsrc kubernetes | awk '/^Version:/ {print $2; exit}')
[[ -n "$version" ]] || { echo "build-kube.sh: no kubernetes source package" >&2; exit 1; }
dir="$cache/kubernetes-$version"
bin="$dir/bin"
missing=()
for c in "${components[@]}"; do [[ -x "$bin/$c" ]] || missing+=("$c"); done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$bin"
  exit 0
fi

apt-get install -y -q --no-install-recommends dpkg-dev golang-1.19-go rsync gcc libc6-dev \
  golang-github-modern-go-reflect2-dev >&2
mkdir -p "$dir" "$bin"
src=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
if [[ -z "$src" ]]; then
  (cd "$dir" && apt-get source -q kubernetes >&2)
  src=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
fi
# reflect2 1.0.1 reads runtime internals that moved in Go 1.18; Debian ships the fixed 1.0.2.
reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
if [[ ! -e "$src/vendor/github.com/modern-go/reflect2/go_above_118.go" ]]; then
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$reflect2" "$src/vendor/github.com/modern-go/reflect2"
fi
export PATH=/usr/lib/go-1.19/bin:$PATH
export GOFLAGS= GOCACHE="$dir/gocache" KUBE_BUILD_PLATFORMS=linux/amd64
for c in "${missing[@]}"; do
  if [[ $c == pause ]]; then
    tag=$(awk '$1 == "TAG" {print $3; exit}' "$src/build/pause/Makefile")
    gcc -Os -Wall -Werror -static -DVERSION="v${tag}-debian" -o "$bin/pause.tmp" \
      "$src/build/pause/linux/pause.c"
    mv "$bin/pause.tmp" "$bin/pause"
    continue
  fi
  echo "build-kube.sh: building $c from kubernetes $version (minutes)" >&2
  make -C "$src" WHAT="cmd/$c" >&2
  install -m 0755 "$src/_output/local/bin/linux/amd64/$c" "$bin/$c"
done
echo "$bin"
