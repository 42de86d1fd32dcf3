#!/usr/bin/env bash
# Builds pgvector (not a Debian package in bookworm) for the knowledge store's PostgreSQL tests and
# installs it into Debian's PostgreSQL 15. The C source comes from the Go module proxy (the GitHub
# repository as a module: no extra download tool), builds with make against postgresql-server-dev-15,
# and is cached in ~/.cache/voicefleet/pgvector-<version>. A second run only re-installs a missing or
# different vector.so. Installing writes the system's PostgreSQL dirs (through sudo unless root).
# Prints the installed vector.so's path.
set -euo pipefail

PGVECTOR_VERSION=${PGVECTOR_VERSION:-0.8.1}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

CACHE=${VOICEFLEET_CACHE:-$HOME/.cache/voicefleet}
BUILD="$CACHE/pgvector-$PGVECTOR_VERSION"

if [ ! -f "$BUILD/vector.so" ]; then
  echo "[pgvector] building pgvector $PGVECTOR_VERSION" >&2
  src=$(cd / && GOFLAGS=-modcacherw go mod download -json "github.com/pgvector/pgvector@v$PGVECTOR_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$BUILD.tmp"
  mkdir -p "$CACHE"
  cp -r "$src" "$BUILD.tmp"
  chmod -R u+w "$BUILD.tmp"
  # OPTFLAGS: no -march=native, so a cache shared between machines runs on each of them
  make -s -C "$BUILD.tmp" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >&2
  mv "$BUILD.tmp" "$BUILD"
fi

installed="$("$PG_CONFIG" --pkglibdir)/vector.so"
if ! cmp -s "$BUILD/vector.so" "$installed"; then
  echo "[pgvector] installing into $("$PG_CONFIG" --pkglibdir)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO make -s -C "$BUILD" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" install >&2
fi
echo "$installed"
