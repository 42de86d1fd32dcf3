#!/usr/bin/env bash
# Sets up a fresh Debian machine for voicefleet, idempotently:
#   Debian packages (redis-server, redis-sentinel, espeak-ng, chromium, libopus0, prometheus (with
#   promtool) for the alert and dashboard tests, and for the real node runc,
#   the CNI plugins, iptables, buildah, mmdebstrap, and PostgreSQL 15 with its server headers and the
#   RUM extension for the knowledge store's pgvector tests), a virtualenv in .venv with the project
#   installed editable (this generates the gRPC stubs), the Kubernetes binaries and the real
#   node's containerd and CoreDNS and the recording tests' S3 server (versitygw) built once from
#   the Go module proxy, pgvector built from its source (hack/pgvector.sh), and the container
#   images built from the Dockerfile without a Docker engine (all cached in
#   ~/.cache/voicefleet; see hack/kube-binaries.sh, hack/node-binaries.sh, hack/images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-server espeak-ng chromium sox fonts-liberation libopus0 prometheus redis-sentinel
  containernetworking-plugins iptables conntrack buildah mmdebstrap uidmap gcc libc6-dev libseccomp-dev pkg-config
  postgresql-15 postgresql-server-dev-15 postgresql-15-rum make)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[bootstrap] apt-get install ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The agent pods' redis and the tests start their own servers; the distro ones are not needed
# (the distro Prometheus would also hold port 9090, PostgreSQL 5432).
systemctl disable --now redis-server redis-sentinel prometheus postgresql >/dev/null 2>&1 || true

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "[bootstrap] pip install -e .[operator,agent,knowledge,test]" >&2
.venv/bin/python -m pip install -q -e '.[operator,agent,knowledge,test]'

echo "[bootstrap] Kubernetes test binaries" >&2
hack/kube-binaries.sh >/dev/null
echo "[bootstrap] real node binaries (containerd, CoreDNS)" >&2
hack/node-binaries.sh >/dev/null
echo "[bootstrap] S3-compatible server for the recording tests (versitygw)" >&2
hack/s3-server.sh >/dev/null
echo "[bootstrap] pgvector for the knowledge store tests" >&2
hack/pgvector.sh >/dev/null
echo "[bootstrap] container images (Dockerfile, Redis, pause)" >&2
hack/images.sh >/dev/null
echo "[bootstrap] done" >&2
