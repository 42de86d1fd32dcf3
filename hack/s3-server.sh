#!/usr/bin/env bash
# Builds the S3-compatible server the recording tests upload to, from the Go module proxy, and
# caches it outside the repo (like hack/kube-binaries.sh): SeaweedFS's single `weed` binary, run
# as `weed server -s3` (master + volume + filer + S3 gateway in one process). A second run does
# nothing. Prints the binary's path on stdout.
set -euo pipefail

SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}

CACHE=${VOICEFLEET_CACHE:-$HOME/.cache/voicefleet}
BIN="$CACHE/bin/seaweedfs-$SEAWEEDFS_VERSION"
mkdir -p "$BIN"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [ ! -x "$BIN/weed" ]; then
  echo "[s3-server] building weed $SEAWEEDFS_VERSION" >&2
  # `go install pkg@version` refuses modules whose go.mod has replace directives (SeaweedFS
  # replaces a deleted dependency), so build inside the downloaded module, where they apply.
  src=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$BIN/weed.tmp" ./weed)
  mv "$BIN/weed.tmp" "$BIN/weed"
fi
echo "$BIN/weed"
