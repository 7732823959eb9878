#!/usr/bin/env bash
# Builds the node's container images locally, with no registry and no network:
#   sluice   the three Sluice binaries with their shared libraries (from this Debian 12 build),
#            busybox-static as /bin/sh for the CNI install step, and scripts/sluice-install-cni
#   busybox  Debian's busybox-static, for test pods (nc, wget, ip)
#   pause    the static sandbox binary scripts/build-kube.sh builds from the Kubernetes tree
#
#   scripts/build-images.sh BUILD_DIR KUBE_BIN_DIR OUT_DIR [--import]
#
# Each image is one uncompressed layer written as an OCI image layout archive by hand (tar with
# sorted names, zero mtimes and owners, so the same files give the same digests). OUT_DIR gets
# <name>.oci.tar plus OUT_DIR/sluice-rootfs/, the staged root the repository's Containerfile copies:
# users with a registry build the same image with `buildah bud -f Containerfile OUT_DIR` (or
# `docker build`) and push it. --import loads all three with `ctr -n k8s.io images import`.
#
# Image names: localhost/sluice:$SLUICE_IMAGE_TAG (default 0.1.0, what kustomization.yaml
# references), localhost/busybox:1.35, localhost/pause:3.4 (containerd's sandbox_image).
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 BUILD_DIR KUBE_BIN_DIR OUT_DIR [--import]" >&2
  exit 2
fi
build=$(realpath "$1")
kubebin=$(realpath "$2")
out=$3
import=${4:-}
tag=${SLUICE_IMAGE_TAG:-0.1.0}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(realpath "$out")

die() {
  echo "build-images.sh: $*" >&2
  exit 1
}
for f in "$build/cni/sluice" "$build/policyd/daemon/sluice-policyd" "$build/policyd/ctl/sluicectl" \
  "$kubebin/pause" /bin/busybox; do
  [[ -x $f ]] || die "missing $f (build it first; /bin/busybox is Debian's busybox-static)"
done
# The busybox images have no libraries: /bin/busybox must be Debian's busybox-static.
if ldd /bin/busybox >/dev/null 2>&1; then die "/bin/busybox is not static (install busybox-static)"; fi

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Copies a binary and every shared library it loads (as ldd resolves them here) into a rootfs,
# keeping library paths so the dynamic loader finds them without an ld.so.cache.
add_binary() {
  local rootfs=$1 src=$2 dst=$3
  # Stripped: the image carries no debug info (a RelWithDebInfo build is ~10x larger).
  install -D -m 0755 -s "$src" "$rootfs$dst"
  local lib
  for lib in $(ldd "$src" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
    [[ -e "$rootfs$lib" ]] || install -D -m 0755 "$(realpath "$lib")" "$rootfs$lib"
  done
}

add_busybox() {
  local rootfs=$1
  install -D -m 0755 /bin/busybox "$rootfs/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
  done
  mkdir -p "$rootfs/tmp" "$rootfs/etc"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
}

# write_image NAME REF ROOTFS ENTRYPOINT_JSON -> OUT_DIR/NAME.oci.tar
write_image() {
  local name=$1 ref=$2 rootfs=$3 entrypoint=$4
  local work
  work=$(mktemp -d)
  mkdir -p "$work/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$rootfs" -cf "$work/layer.tar" .
  local layer
  layer=$(sha "$work/layer.tar")
  local layer_size
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/blobs/sha256/$layer"
  cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"],"Entrypoint":$entrypoint},"rootfs":{"type":"layers","diff_ids":["sha256:$layer"]}}
EOF
  local config config_size
  config=$(sha "$work/config.json")
  config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$config"
  cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer","size":$layer_size}]}
EOF
  local manifest manifest_size
  manifest=$(sha "$work/manifest.json")
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$manifest"
  cat >"$work/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"annotations":{"io.containerd.image.name":"$ref","org.opencontainers.image.ref.name":"$ref"}}]}
EOF
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" \
    -cf "$out/$name.oci.tar.tmp" oci-layout index.json blobs
  mv "$out/$name.oci.tar.tmp" "$out/$name.oci.tar"
  rm -rf "$work"
  echo "build-images.sh: $ref sha256:$manifest -> $out/$name.oci.tar" >&2
}

# sluice: the rootfs the Containerfile copies.
rootfs="$out/sluice-rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"
add_busybox "$rootfs"
add_binary "$rootfs" "$build/policyd/daemon/sluice-policyd" /usr/local/bin/sluice-policyd
add_binary "$rootfs" "$build/cni/sluice" /usr/local/bin/sluice
add_binary "$rootfs" "$build/policyd/ctl/sluicectl" /usr/local/bin/sluicectl
install -m 0755 "$root/scripts/sluice-install-cni" "$rootfs/usr/local/bin/sluice-install-cni"
cp "$root/Containerfile" "$out/Containerfile"
write_image sluice "localhost/sluice:$tag" "$rootfs" '["/usr/local/bin/sluice-policyd"]'

bbroot=$(mktemp -d)
add_busybox "$bbroot"
write_image busybox localhost/busybox:1.35 "$bbroot" '["/bin/sh"]'
rm -rf "$bbroot"

pauseroot=$(mktemp -d)
install -D -m 0755 "$kubebin/pause" "$pauseroot/pause"
write_image pause localhost/pause:3.4 "$pauseroot" '["/pause"]'
rm -rf "$pauseroot"

if [[ $import == --import ]]; then
  for name in sluice busybox pause; do
    ctr -n k8s.io images import --all-platforms "$out/$name.oci.tar" >&2
  done
fi
echo "$out"
