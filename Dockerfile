# One image for the operator (`voicefleet-operator run`) and the agent pods (`voicefleet pod`).
# `docker build .` works as is; the tests build it with buildah (hack/images.sh), the base from
# Debian packages, and run it on a real local node.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng libopus0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The context is only what `pip install .` needs (see .dockerignore).
COPY . .
# Bytecode stays (pods run with a read-only root filesystem, so it could not be cached later);
# the dependencies' test suites go.
RUN pip install --no-cache-dir . \
 && find /usr/local/lib/python3*/*-packages -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /src
WORKDIR /
# A passwd entry for UID 10001 (kopf asks for the user's name). Its HOME is /tmp, the pods' one
# writable directory: libpulse (under espeak-ng) and onnxruntime keep small per-user files there.
RUN useradd --uid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin voicefleet
ENV HOME=/tmp
USER 10001
