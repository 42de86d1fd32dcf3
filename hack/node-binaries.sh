#!/usr/bin/env bash
# Builds what the real worker node runs beside kubelet and kube-proxy (those come from
# hack/kube-binaries.sh) from the Go module proxy, and caches them outside the repo:
#   containerd, containerd-shim-runc-v2, ctr   (github.com/containerd/containerd/v2)
#   coredns                                    (github.com/coredns/coredns)
#   runc                                       (github.com/opencontainers/runc, cgo + libseccomp)
# The CNI plugins come from Debian (hack/bootstrap.sh). A second run does nothing.
# Prints the bin directory on stdout.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.9}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
# Debian's runc 1.1.5 cannot start containerd 2.2's pod sandboxes ("can't get final child's PID").
RUNC_VERSION=${RUNC_VERSION:-v1.4.4}

CACHE=${VOICEFLEET_CACHE:-$HOME/.cache/voicefleet}
BIN="$CACHE/bin/node-containerd-$CONTAINERD_VERSION-coredns-$COREDNS_VERSION-runc-$RUNC_VERSION"
mkdir -p "$BIN"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { echo "[node-binaries] $*" >&2; }

build() {  # name package version [build tags] [extra ldflags]
  [ -x "$BIN/$1" ] && return
  log "building $1 $3"
  local tmp; tmp=$(mktemp -d)
  # go install names the binary after the package; build into a scratch GOBIN, then move it.
  GOBIN="$tmp" go install -tags "${4:-}" -ldflags "-s -w ${5:-}" "$2@$3"
  mv "$tmp/$(basename "$2")" "$BIN/$1"
  rmdir "$tmp"
}

# The CRI reports this version to kubelet, which checks it.
stamp="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
# Without cgo the btrfs snapshotter drops out by itself; the node uses overlayfs.
for cmd in containerd containerd-shim-runc-v2 ctr; do
  build "$cmd" "github.com/containerd/containerd/v2/cmd/$cmd" "$CONTAINERD_VERSION" no_btrfs,no_devmapper,no_zfs "$stamp"
done
build coredns github.com/coredns/coredns "$COREDNS_VERSION"
# runc needs cgo for its nsenter part and libseccomp for the pods' RuntimeDefault seccomp profile.
CGO_ENABLED=1 build runc github.com/opencontainers/runc "$RUNC_VERSION" seccomp "-X main.version=${RUNC_VERSION#v}"
echo "$BIN"
