# The tournament client with an exported agent: the client extra only (no torch, no game).
#   docker build -t hockey-client .                                  (agent: models/champion.onnx)
#   docker build -t hockey-client --build-arg AGENT=models/other.onnx .
#   docker run --rm -e COMPRL_SERVER_URL=host -e COMPRL_SERVER_PORT=65335 \
#       -e COMPRL_ACCESS_TOKEN=... hockey-client
# Without an agent file at build time, mount one: -v "$PWD/my.onnx:/agent/agent.onnx:ro".
FROM python:3.11-slim

ARG AGENT=models/champion.onnx
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COMPRL_SERVER_PORT=65335

WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY export ./export
COPY league ./league
COPY selfplay ./selfplay
RUN pip install '.[client]' && cd / && rm -rf /src

# pyproject.toml makes the wildcard match something, so the build also works without an
# agent file (then it must be mounted at /agent/agent.onnx).
COPY pyproject.toml ${AGENT}* /tmp/agent/
RUN mkdir -p /agent \
    && if [ -f "/tmp/agent/$(basename "${AGENT}")" ]; then mv "/tmp/agent/$(basename "${AGENT}")" /agent/agent.onnx; fi \
    && rm -rf /tmp/agent \
    && useradd --create-home --shell /usr/sbin/nologin player

USER player
WORKDIR /home/player
# The client checks the agent file before connecting and exits non-zero if it is unusable.
ENTRYPOINT ["hockey-agent", "client", "/agent/agent.onnx"]
