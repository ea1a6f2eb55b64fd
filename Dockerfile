# The nodetap image: agent, forwarder and replay in one (the first argument picks the
# command: capture, forwarder, replay, export, status, ...).
#   docker build -t nodetap:dev .
# Debian, because BCC comes from Debian's python3-bpfcc (the PyPI package named bcc is
# unrelated); the virtual environment sees the system packages (bcc, nftables).
# Kernel headers are not in the image: the DaemonSet mounts the node's /lib/modules and
# /usr/src read-only (BCC compiles against the running kernel's headers).

# Stage 1: the Rust core (core/, the Python module nodetap_core) as a wheel. rustup's
# toolchain from the official image, because Debian bookworm's rustc is older than the
# core's crates need; the image's Python is Debian's 3.11, the same as the final stage's,
# so the wheel's ABI matches. Cargo.lock pins every crate (--locked).
FROM rust:1-slim-bookworm AS core
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src/core
RUN python3 -m venv /opt/maturin \
 && /opt/maturin/bin/pip install --no-cache-dir --disable-pip-version-check "maturin>=1.7,<2"
COPY core/Cargo.toml core/Cargo.lock core/pyproject.toml core/nodetap_core.pyi ./
COPY core/src ./src
RUN /opt/maturin/bin/maturin build --release --locked --interpreter python3 -o /wheels

# Stage 2: the image.
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
COPY --from=core /wheels /opt/nodetap/wheels
# Plain (non-editable) install: the BPF sources (bpf/*.c, *.h) ship as package data of the
# bpf package, found through importlib.resources. The source tree is removed afterwards, so
# the check below imports the installed copy and reads its BPF sources.
RUN python3 -m venv --system-site-packages /opt/nodetap/venv \
 && /opt/nodetap/venv/bin/pip install --no-cache-dir --disable-pip-version-check . /opt/nodetap/wheels/nodetap_core-*.whl \
 && cd / && rm -rf /opt/nodetap/src /opt/nodetap/wheels \
 && /opt/nodetap/venv/bin/python -c "import bcc, nftables, nodetap_core, cli.main; from agent.loader import program_text; program_text()" \
 && mkdir -p /var/lib/nodetap && chown 65532:65532 /var/lib/nodetap
WORKDIR /

ENV PATH=/opt/nodetap/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The agent runs as root with a few capabilities (see daemonset/base/agent.yaml); the
# forwarder and export run as 65532 (set in their manifests).
ENTRYPOINT ["nodetap"]
CMD ["--help"]
