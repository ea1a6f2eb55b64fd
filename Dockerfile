# The nodetap image: agent, forwarder and replay in one (the first argument picks the
# command: capture, forwarder, replay, export, status, ...).
#   docker build -t nodetap:dev .
# Debian, because BCC comes from Debian's python3-bpfcc (the PyPI package named bcc is
# unrelated); the virtual environment sees the system packages (bcc, nftables).
# Kernel headers are not in the image: the DaemonSet mounts the node's /lib/modules and
# /usr/src read-only (BCC compiles against the running kernel's headers).
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-bpfcc python3-nftables \
      iproute2 iptables conntrack kmod ca-certificates \
      binutils \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/nodetap/src
COPY pyproject.toml README.md ./
COPY nodetap ./nodetap
COPY cli ./cli
COPY agent ./agent
COPY netsetup ./netsetup
COPY replay ./replay
COPY forwarder ./forwarder
COPY bpf ./bpf
COPY proto ./proto
# Plain (non-editable) install: the BPF sources (bpf/*.c, *.h) ship as package data of the
# bpf package, found through importlib.resources. The source tree is removed afterwards, so
# the check below imports the installed copy and reads its BPF sources.
RUN python3 -m venv --system-site-packages /opt/nodetap/venv \
 && /opt/nodetap/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && cd / && rm -rf /opt/nodetap/src \
 && /opt/nodetap/venv/bin/python -c "import bcc, nftables, cli.main; from agent.loader import program_text; program_text()" \
 && mkdir -p /var/lib/nodetap && chown 65532:65532 /var/lib/nodetap
WORKDIR /

ENV PATH=/opt/nodetap/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The agent runs as root with a few capabilities (see daemonset/base/agent.yaml); the
# forwarder and export run as 65532 (set in their manifests).
ENTRYPOINT ["nodetap"]
CMD ["--help"]
