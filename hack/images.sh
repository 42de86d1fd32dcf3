#!/usr/bin/env bash
# Builds the container images a local Kubernetes node needs, without a Docker engine
# (mmdebstrap + buildah, as root), and caches each one outside the repo as a docker-archive
# tarball, which keeps its name for `ctr -n k8s.io images import PATH`:
#   docker.io/library/python:3.11-slim-bookworm  the Dockerfile's base, made from Debian packages
#   registry.k8s.io/pause:3.10                   containerd's sandbox image, from hack/pause.c
#   voicefleet.local/redis:7-debian              Debian's redis-server, for the chart's in-cluster Redis
#   ghcr.io/voicefleet/voicefleet:<appVersion>   the repo's Dockerfile, target agent (agent pods)
#   ghcr.io/voicefleet/voicefleet-operator:<appVersion>   the same Dockerfile, target operator
#   ghcr.io/voicefleet/voicefleet-knowledge:<appVersion>  the same Dockerfile, target knowledge
# A tarball's name holds a hash of its image's inputs, so a second run with the same inputs
# does nothing. Prints "NAME PATH" per image on stdout; logs go to stderr.
# Reaches only the Debian mirror and PyPI: nothing is pulled from a container registry.
set -euo pipefail
# Most build steps run inside $(...): without this, bash would not stop on their failures there.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

# Each image's hash covers its build functions' source (`declare -f`: comments don't count)
# and the settings below; bump RECIPE to rebuild everything anyway.
RECIPE=1
CACHE=${VOICEFLEET_CACHE:-$HOME/.cache/voicefleet}
OUT=$CACHE/images
mkdir -p "$OUT"

APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' helm/voicefleet/Chart.yaml)
[ -n "$APP_VERSION" ] || { echo "[images] no appVersion in helm/voicefleet/Chart.yaml" >&2; exit 1; }
BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
APP_IMAGE=ghcr.io/voicefleet/voicefleet:$APP_VERSION
OPERATOR_IMAGE=ghcr.io/voicefleet/voicefleet-operator:$APP_VERSION
KNOWLEDGE_IMAGE=ghcr.io/voicefleet/voicefleet-knowledge:$APP_VERSION
REDIS_IMAGE=voicefleet.local/redis:7-debian
PAUSE_IMAGE=registry.k8s.io/pause:3.10

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")
BASE_PACKAGES=(python3 python3-pip python3-venv ca-certificates)
REDIS_PACKAGES=(redis-server)
MMDEBSTRAP_OPTS=(
  # Merged /usr by symlinks plus usr-is-merged: the usrmerge package would pull in perl (~50 MB).
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  # As in Debian's slim images: no docs (copyrights stay), man pages or translations. These stay
  # in /etc/dpkg/dpkg.cfg.d, so the Dockerfile's apt-get install obeys them too.
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
)
# As in the official Debian images (docker-clean, docker-gzip-indexes, docker-no-languages):
# a Dockerfile's apt-get install leaves no .debs or package caches in its layer.
APT_OPTS=(
  --aptopt='DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }'
  --aptopt='APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }'
  --aptopt='Dir::Cache::pkgcache ""'
  --aptopt='Dir::Cache::srcpkgcache ""'
  --aptopt='Acquire::GzipIndexes "true"'
  --aptopt='Acquire::Languages "none"'
)
# RUN steps share the host's network: buildah must never set up a CNI bridge here. Where runc
# cannot run, BUILDAH_ISOLATION=chroot needs nothing beyond chroot and bind mounts.
RUN_OPTS=(--network host --isolation "${BUILDAH_ISOLATION:-oci}")
# The OCI runtime of RUN steps: the node's runc (hack/node-binaries.sh builds it, cached). Debian's
# buildah only recommends a runtime, and without one every RUN fails with "exec: no command".
export BUILDAH_RUNTIME=${BUILDAH_RUNTIME:-$(hack/node-binaries.sh)/runc}
# A host behind a TLS-inspecting proxy trusts its CA only in its own bundle: lend that bundle to
# the RUN steps (pip) read-only while they run; the image keeps Debian's.
HOST_CA=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$HOST_CA" ] && RUN_OPTS+=(--volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro")

log() { echo "[images] $*" >&2; }
digest() { sha256sum | cut -c1-16; }
# The tarball of an image: <repo>_<tag>_<hash>.tar, e.g. voicefleet_0.1.0_0123456789abcdef.tar.
tarball() { local n=${1##*/}; echo "$OUT/${n%%:*}_${n#*:}_$2.tar"; }
image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/voicefleet-images.XXXXXX")
cleanup() {  # the working containers this run made (committed ones are gone already)
  local c
  if [ -f "$WORK/containers" ]; then
    while read -r c; do buildah rm "$c" >/dev/null 2>&1 || true; done < "$WORK/containers"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

need_packages() {  # package...: apt-get install those not installed yet
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

name_image() {  # id name: name the image, then drop the image that had the name if nothing uses it
  local old; old=$(image_id "$2")
  buildah tag "$1" "$2"
  # rmi refuses images that still have a name or a container: only a dangling old build goes.
  [ -z "$old" ] || [ "$old" = "$1" ] || buildah rmi "$old" >/dev/null 2>&1 || true
}

save() {  # name tarball: write it atomically, then drop older tarballs of the same image
  local n=${1##*/} old
  rm -f "$2.part"
  buildah push --quiet "$1" "docker-archive:$2.part:$1" >&2
  mv "$2.part" "$2"
  for old in "$OUT/${n%%:*}_"*.tar "$OUT/${n%%:*}_"*.tar.part; do
    [ "$old" = "$2" ] || rm -f "$old"
  done
}

new_container() {  # image: a working container (removed on exit); prints its name
  local c; c=$(buildah from --pull=never "$1")
  echo "$c" >> "$WORK/containers"  # callers run this in $(...): a file outlives the subshell
  echo "$c"
}

rootfs_container() {  # mmdebstrap-args...: a container holding a fresh Debian root filesystem
  mmdebstrap --quiet "${MMDEBSTRAP_OPTS[@]}" "$@" "$SUITE" - "${SOURCES[@]}" \
    | mmtarfilter --path-exclude='/dev/*' > "$WORK/rootfs.tar"
  local c; c=$(new_container scratch)
  # ADD of a local tarball unpacks it with owners and modes as they are in the tarball.
  buildah add "$c" "$WORK/rootfs.tar" / >/dev/null
  rm -f "$WORK/rootfs.tar"
  echo "$c"
}

commit() {  # container name
  name_image "$(buildah commit --quiet --rm --format docker "$1")" "$2"
}

# --- docker.io/library/python:3.11-slim-bookworm ----------------------------------------------
# Debian's Python 3.11, set up where ./Dockerfile relies on the official image: python and pip
# on PATH, `pip install` allowed system-wide (no PEP 668 marker), LANG=C.UTF-8.
build_base() {
  local c
  c=$(rootfs_container --variant=minbase --include="${BASE_PACKAGES[*]}" "${APT_OPTS[@]}" \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='for b in python:python3 python3:python3 pip:pip3 pip3:pip3; do ln -sf "/usr/bin/${b#*:}" "$1/usr/local/bin/${b%:*}"; done' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old')
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' "$c"
  commit "$c" "$BASE_IMAGE"
}

# --- registry.k8s.io/pause:3.10 -----------------------------------------------------------------
# A static binary, so the image needs nothing else (FROM scratch). UID 65535 like upstream's.
build_pause() {
  need_packages gcc libc6-dev
  gcc -static -Os -s -Wall -o "$WORK/pause" hack/pause.c
  local c; c=$(new_container scratch)
  buildah copy --quiet --chmod 0755 "$c" "$WORK/pause" /pause >/dev/null
  buildah config --user 65535:65535 --entrypoint '["/pause"]' "$c"
  commit "$c" "$PAUSE_IMAGE"
}

# --- voicefleet.local/redis:7-debian ------------------------------------------------------------
# The chart runs it as UID 999 and only appends args, so the entrypoint opens it to other pods
# (without a config file Debian's redis-server keeps protected mode on). The redis user gets
# UID 999 before redis-server's postinst would pick a free system UID; /data is its workdir.
build_redis() {
  local c
  c=$(rootfs_container --variant=essential --include="${REDIS_PACKAGES[*]}" \
    --essential-hook='echo "redis:x:999:999::/var/lib/redis:/usr/sbin/nologin" >> "$1/etc/passwd"; echo "redis:x:999:" >> "$1/etc/group"' \
    --customize-hook='install -d -o 999 -g 999 -m 0750 "$1/data"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old')
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --user 999:999 --workingdir /data --port 6379/tcp \
    --entrypoint '["redis-server", "--protected-mode", "no", "--bind", "*", "-::*"]' --cmd '[]' "$c"
  commit "$c" "$REDIS_IMAGE"
}

# --- ghcr.io/voicefleet/voicefleet --------------------------------------------------------------
# The build context's files, as .dockerignore's allowlist (its `!` lines) selects them: tracked
# and untracked-but-not-ignored files, skipping tracked files deleted in the worktree.
context_files() {
  local paths f
  mapfile -t paths < <(sed -n 's/^!//p' .dockerignore)
  git ls-files -z --cached --others --exclude-standard -- "${paths[@]}" | sort -zu |
    while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done
}

build_target() {  # target name smoke-script: build the Dockerfile's target, test it, name it
  buildah bud --pull=never --format docker "${RUN_OPTS[@]}" --target "$1" --iidfile "$WORK/$1.iid" . >&2
  local id; id=$(cat "$WORK/$1.iid")
  # Smoke test before the image gets its name, as the image's user (10001).
  local c; c=$(new_container "$id")
  if ! buildah run "${RUN_OPTS[@]}" "$c" -- sh -ec "$3" >&2; then
    log "smoke test of the new $1 image failed: not tagged, removed"
    buildah rm "$c" >/dev/null; buildah rmi "$id" >/dev/null || true
    return 1
  fi
  buildah rm "$c" >/dev/null
  name_image "$id" "$2"
}

# The agent image: its entry point, the generated stubs, the heavy native imports and espeak-ng;
# and none of the operator's packages, nor the knowledge server's stores and embedding model.
build_app() {
  build_target agent "$APP_IMAGE" '
    voicefleet --help >/dev/null
    python -c "import agent_pod.cli.call, agent_pod.runtime, voicefleet.v1, aiortc, pocketsphinx, onnxruntime"
    for m in kopf kubernetes wordllama sqlean psycopg; do
      if python -c "import $m" 2>/dev/null; then echo "$m in the agent image"; exit 1; fi
    done
    espeak-ng --stdout "ok" 2>/dev/null | head -c 4 | grep -q RIFF'
}

# The operator image: its entry point and handlers; and none of the audio stack.
build_operator() {
  build_target operator "$OPERATOR_IMAGE" '
    voicefleet-operator --help >/dev/null
    python -c "import voicefleet_operator.handlers, voicefleet_operator.leader"
    for m in aiortc av numpy onnxruntime grpc; do
      if python -c "import $m" 2>/dev/null; then echo "$m in the operator image"; exit 1; fi
    done'
}

# The knowledge servers' image: its command, the stores and the embedding model; and none of the
# audio stack, gRPC or the operator's packages.
build_knowledge() {
  build_target knowledge "$KNOWLEDGE_IMAGE" '
    voicefleet knowledge serve --help >/dev/null
    python -c "import agent_pod.knowledge.serve, agent_pod.knowledge.sqlite_store, agent_pod.knowledge.pgvector_store, wordllama"
    for m in aiortc av onnxruntime pocketsphinx soxr grpc kopf kubernetes; do
      if python -c "import $m" 2>/dev/null; then echo "$m in the knowledge image"; exit 1; fi
    done'
}

# image hash build-function: build unless its tarball exists, then print "NAME PATH".
BUILT=()
image() {
  local name=$1 path; path=$(tarball "$1" "$2")
  if [ ! -f "$path" ]; then
    [ "$(id -u)" -eq 0 ] || { log "building $name needs root (mmdebstrap, buildah)"; exit 1; }
    local t0=$SECONDS
    log "building $name"
    "$3" >&2
    save "$name" "$path"
    log "built $name in $((SECONDS - t0))s: $path"
    BUILT+=("$name")
  fi
  echo "$name $path"
}

# A hash: the recipe (settings and functions' source), then the inputs that are files.
recipe() { echo "$RECIPE ${SOURCES[*]} ${MMDEBSTRAP_OPTS[*]}"; declare -f rootfs_container commit "$@"; }

BASE_HASH=$({ recipe build_base; echo "${BASE_PACKAGES[*]} ${APT_OPTS[*]}"; } | digest)
image "$BASE_IMAGE" "$BASE_HASH" build_base

PAUSE_HASH=$({ recipe build_pause; cat hack/pause.c; } | digest)
image "$PAUSE_IMAGE" "$PAUSE_HASH" build_pause

REDIS_HASH=$({ recipe build_redis; echo "${REDIS_PACKAGES[*]}"; } | digest)
image "$REDIS_IMAGE" "$REDIS_HASH" build_redis

# The targets hash the same inputs (the context, the Dockerfile) plus their own recipe and name.
app_hash() {  # build-function image-name
  {
    recipe build_target "$1" context_files; echo "$BASE_HASH $2"
    sha256sum Dockerfile .dockerignore
    context_files | xargs -0r sha256sum
  } | digest
}
APP_HASH=$(app_hash build_app "$APP_IMAGE")
OPERATOR_HASH=$(app_hash build_operator "$OPERATOR_IMAGE")
KNOWLEDGE_HASH=$(app_hash build_knowledge "$KNOWLEDGE_IMAGE")
if { [ ! -f "$(tarball "$APP_IMAGE" "$APP_HASH")" ] || [ ! -f "$(tarball "$OPERATOR_IMAGE" "$OPERATOR_HASH")" ] ||
  [ ! -f "$(tarball "$KNOWLEDGE_IMAGE" "$KNOWLEDGE_HASH")" ]; } &&
  [[ " ${BUILT[*]} " != *" $BASE_IMAGE "* ]]; then
  # Build on exactly the cached base, whatever buildah's storage holds under that name now.
  log "loading $BASE_IMAGE from its tarball"
  old=$(image_id "$BASE_IMAGE")
  buildah pull --quiet "docker-archive:$(tarball "$BASE_IMAGE" "$BASE_HASH")" >/dev/null
  [ -z "$old" ] || [ "$old" = "$(image_id "$BASE_IMAGE")" ] || buildah rmi "$old" >/dev/null 2>&1 || true
fi
image "$APP_IMAGE" "$APP_HASH" build_app
image "$OPERATOR_IMAGE" "$OPERATOR_HASH" build_operator
image "$KNOWLEDGE_IMAGE" "$KNOWLEDGE_HASH" build_knowledge
