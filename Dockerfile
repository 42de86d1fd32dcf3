# Three images, one per role, from one context:
#   docker build --target operator -t ghcr.io/voicefleet/voicefleet-operator:0.1.0 .
#   docker build --target knowledge -t ghcr.io/voicefleet/voicefleet-knowledge:0.1.0 .
#   docker build -t ghcr.io/voicefleet/voicefleet:0.1.0 .   (agent pods; the default target, so last)
# The operator image has no audio stack (ffmpeg, ONNX runtime, speech models) and the agent image
# no Kubernetes client: each is about half the size of one image with both, and the operator, the
# one holding API rights, carries no media codecs. The knowledge image (KnowledgeBases' servers,
# `voicefleet knowledge serve`) has the stores and the embedding model and none of the audio stack,
# WebRTC or gRPC; the agents, which reach it over HTTP, carry no store or model. The tests build
# them with buildah (hack/images.sh), the base from Debian packages, and run them on a real node.
FROM python:3.11-slim-bookworm AS runtime
# A passwd entry for UID 10001 (kopf asks for the user's name). Its HOME is /tmp, the pods' one
# writable directory: libpulse (under espeak-ng) and onnxruntime keep small per-user files there.
RUN useradd --uid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin voicefleet
ENV HOME=/tmp

# The context is only what `pip install .` needs (see .dockerignore). Bytecode stays (pods run with
# a read-only root filesystem, so it could not be cached later); the dependencies' test suites go.
FROM runtime AS operator
COPY . /src
RUN pip install --no-cache-dir '/src[operator]' \
 && find /usr/local/lib/python3*/*-packages -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /src
USER 10001

FROM runtime AS knowledge
COPY . /src
RUN pip install --no-cache-dir '/src[knowledge]' \
 && find /usr/local/lib/python3*/*-packages -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /src
USER 10001

FROM runtime AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng libopus0 \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN pip install --no-cache-dir '/src[agent]' \
 && find /usr/local/lib/python3*/*-packages -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /src
USER 10001
