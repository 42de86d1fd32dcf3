# One image for the operator (`voicefleet-operator run`) and the agent pods (`voicefleet pod`).
# Not built in this repository's CI (no Docker engine there); see README.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng libopus0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . && rm -rf /src
USER 10001
WORKDIR /
