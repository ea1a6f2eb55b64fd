#!/usr/bin/env bash
# Prepare a Debian 12 host (as root) to run nodetap and its tests:
#   Debian packages, kernel headers for BCC, tracefs, and a virtual environment
#   (.venv, made from the system Python so that Debian's bcc and nftables import).
# Idempotent: a second run does nothing and prints nothing but its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="${NODETAP_VENV:-$here/.venv}"
log() { [[ -n "${NODETAP_SETUP_VERBOSE:-}" ]] && echo "setup: $*" >&2 || true; }
die() { echo "setup: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (BPF, packages, netfilter); try: sudo $0"
command -v apt-get >/dev/null || die "this script supports Debian/Ubuntu hosts (apt-get not found)"

# 1. Debian packages. BCC comes from Debian (the PyPI package named bcc is unrelated);
# prometheus for its promtool (the tests check /metrics with it; its server is disabled).
pkgs=(python3-bpfcc bpfcc-tools python3-venv python3-nftables libpython3-dev gcc libc6-dev
      iproute2 iptables nftables conntrack kmod
      nginx-light curl wrk hey tcpdump tshark jq
      openssl libssl-dev  # issue 21: the TLS tests make certificates, link OpenSSL statically
      binutils  # issue 21: objdump finds the RET instructions of Go crypto/tls
      prometheus
      bpftool libcap2-bin vagrant
      nats-server
      haproxy  # issue 18: peers (haproxy in front of a Node.js server)
      apache2  # issue 18 (sendfile): a real server that sends with sendfile and mmap+writev
      nghttp2-client nghttp2-server  # issue 20: HTTP/2 peers (h2load, nghttp, nghttpd)
      chromium)  # chromium: headless, for the test that opens the replay's HTML report
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
kver=$(uname -r)
if [[ ! -e /lib/modules/$kver/build/include ]] && ! dpkg-query -W -f='${Status}' linux-headers-amd64 2>/dev/null | grep -q 'install ok installed'; then
  if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    missing+=("linux-headers-$kver")
  else
    missing+=(linux-headers-amd64)
  fi
fi
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture: answer no, quietly.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true  # only promtool is wanted
  fi
fi
# nginx-light's package starts a daemon on port 80; nodetap's tests run their own nginx.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
# apache2's package starts a daemon on port 80 too; the tests run their own (issue 18).
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now apache2 >/dev/null 2>&1 || true; fi

# 2. Kernel headers for BCC. When the running kernel has no headers package of its own,
#    point /lib/modules/$(uname -r)/{build,source} at the distribution's headers. nodetap's
#    programs read only tracepoint arguments (README: Install, kernel headers), so a header version
#    mismatch cannot change what they read.
if [[ ! -e /lib/modules/$kver/build/include ]]; then
  arch_hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
  common_hdr=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1 || true)
  [[ -n $arch_hdr && -n $common_hdr ]] || die "no kernel headers under /usr/src; install linux-headers-amd64"
  mkdir -p "/lib/modules/$kver"
  ln -sfn "$arch_hdr" "/lib/modules/$kver/build"
  ln -sfn "$common_hdr" "/lib/modules/$kver/source"
  log "linked kernel headers $arch_hdr for $kver"
fi

# 3. tracefs: without it every tracepoint program fails to compile.
if [[ ! -e /sys/kernel/tracing/events ]]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || die "cannot mount tracefs on /sys/kernel/tracing"
  log "mounted tracefs"
fi

# 4. The virtual environment, from the system Python (pyenv's python3 cannot import bcc).
stamp="$venv/.nodetap-installed"
want=$(sha256sum "$here/pyproject.toml" | cut -c1-16)
if [[ ! -x $venv/bin/python ]]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  log "created $venv"
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  pip_log=$(mktemp)
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$here[dev]" >"$pip_log" 2>&1 \
    || { cat "$pip_log" >&2; rm -f "$pip_log"; die "pip install failed (output above)"; }
  rm -f "$pip_log"
  echo "$want" > "$stamp"
  log "installed nodetap into $venv"
fi

# 5. The Rust core (core/, the Python module nodetap_core): built with maturin into the venv,
#    again only when a file of core/ changed (cargo's build cache: CARGO_TARGET_DIR below).
command -v cargo >/dev/null || [[ -x $HOME/.cargo/bin/cargo ]] \
  || die "cargo not found: install a Rust toolchain (rustup, stable >= 1.75)"
export PATH="$PATH:$HOME/.cargo/bin"
# cargo's build cache lives outside the checkout, so that a fresh clone on a machine that has
# built the core once (CI's) does not compile everything again.
export CARGO_TARGET_DIR="${NODETAP_CARGO_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/cargo-target}"
core_stamp="$venv/.nodetap-core"
core_want=$(cd "$here" && git ls-files -co --exclude-standard core | grep -v '^core/fuzz/' | sort \
  | xargs sha256sum | sha256sum | cut -c1-16)
if [[ ! -f $core_stamp || $(cat "$core_stamp") != "$core_want" ]]; then
  core_log=$(mktemp)
  (cd "$here/core" && VIRTUAL_ENV=$venv "$venv/bin/maturin" develop --release -q) >"$core_log" 2>&1 \
    || { cat "$core_log" >&2; rm -f "$core_log"; die "building the Rust core failed (output above)"; }
  rm -f "$core_log"
  echo "$core_want" > "$core_stamp"
  log "built nodetap_core into $venv"
fi
# cargo-fuzz, for the bounded fuzzing in scripts/test.sh (from crates.io, once).
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install -q --locked cargo-fuzz >/dev/null 2>&1 || die "cargo install cargo-fuzz failed"
  log "installed cargo-fuzz"
fi
"$venv/bin/python" -c 'import bcc, nftables' 2>/dev/null \
  || die "the venv cannot import bcc/nftables; recreate it: rm -rf $venv && $0"
echo "setup: ready ($venv)" >&2
