#!/usr/bin/env bash
# Builds the pinned Kubernetes test binaries from the Go module proxy and caches
# them outside the repo. A second run finds them and does nothing.
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#   kubelet, kube-proxy (the real node, see hack/node-binaries.sh)     (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok, kwokctl                                                     (sigs.k8s.io/kwok)
#   helm                                                              (helm.sh/helm/v3)
# Prints the bin directory on stdout.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.19.5}

CACHE=${VOICEFLEET_CACHE:-$HOME/.cache/voicefleet}
BIN="$CACHE/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
mkdir -p "$BIN"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0
LDFLAGS="-s -w"

have() { [ -x "$BIN/$1" ]; }
log() { echo "[kube-binaries] $*" >&2; }

# k8s.io/kubernetes points its staging modules at ./staging with relative
# replaces, so `go install` refuses it; a wrapper module that replaces each
# staging module with its published v0.X.Y release builds the commands.
build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy) missing=()
  for b in "${want[@]}"; do have "$b" || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return
  local dir="$CACHE/src/kubernetes-$KUBE_VERSION" staging="v0.${KUBE_VERSION#v1.}"
  mkdir -p "$dir" && cd "$dir"
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module voicefleet.local/kubebuild"
    echo "go 1.25.0"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  # go mod tidy records the go.sum entries of every package these import.
  cat > deps.go <<'GO'
package kubebuild

import (
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
)
GO
  go mod tidy >&2
  # Stamp the version the way the Kubernetes release build does, so clients can parse it.
  local minor=${KUBE_VERSION#v1.} v; minor=${minor%%.*}
  local stamp=""
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  done
  for b in "${missing[@]}"; do
    log "building $b $KUBE_VERSION"
    go build -ldflags "$LDFLAGS$stamp" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
  done
}

build_etcd() {
  have etcd && return
  local dir="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir" && cd "$dir"
  local modfile
  modfile=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module voicefleet.local/etcdbuild"
    echo "go 1.25.0"
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    grep -oE '^\s+go\.etcd\.io/etcd/[a-z0-9/]+ => \.\./?[a-z0-9/]*' "$modfile" | awk -v v="$ETCD_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  printf 'package etcdbuild\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' > deps.go
  go mod tidy >&2
  log "building etcd $ETCD_VERSION"
  go build -ldflags "$LDFLAGS" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
}

build_go_install() {  # name module version
  have "$1" && return
  log "building $1 $3"
  GOBIN="$BIN" go install -ldflags "$LDFLAGS" "$2@$3"
}

build_kubernetes
build_etcd
build_go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
build_go_install kwokctl sigs.k8s.io/kwok/cmd/kwokctl "$KWOK_VERSION"
build_go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
echo "$BIN"
