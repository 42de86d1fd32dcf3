#!/usr/bin/env bash
# Builds the S3-compatible server the recording tests upload to, from the Go module proxy, and
# caches it outside the repo (like hack/kube-binaries.sh): versitygw with its posix backend (a
# bucket is a directory). SeaweedFS was the first choice, but its `weed` binary compiles some 1500
# packages (every cloud SDK it can replicate to): past 9 minutes on a 2-core machine and not half
# done, so versitygw, a single S3 gateway. A second run does nothing. Prints the binary's path.
set -euo pipefail

VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}

CACHE=${VOICEFLEET_CACHE:-$HOME/.cache/voicefleet}
BIN="$CACHE/bin/versitygw-$VERSITYGW_VERSION"
mkdir -p "$BIN"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [ ! -x "$BIN/versitygw" ]; then
  echo "[s3-server] building versitygw $VERSITYGW_VERSION" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv "$tmp/versitygw" "$BIN/versitygw"
  rmdir "$tmp"
fi
echo "$BIN/versitygw"
