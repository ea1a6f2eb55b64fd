#!/usr/bin/env bash
# The lab's container images, built locally (nothing can be pulled from an image registry),
# as `docker save` archives that `ctr -n k8s.io images import` reads. As root:
#
#   scripts/k8s-lab-images.sh build    # print the paths of pause.tar and nodetap.tar
#
# pause: the kubelet's pod sandbox, a static build of the ten lines of Kubernetes' pause.c.
# nodetap (tag nodetap:dev, what daemonset/overlays/lab runs): two layers,
#   1. a Debian bookworm root filesystem made by debootstrap from Debian's packages (the
#      packages of the Dockerfile), cached by its package list;
#   2. /opt/nodetap/venv: the project and its PyPI dependencies (pip, as the Dockerfile's
#      `pip install .`) and the Rust core built by scripts/setup.sh, rebuilt when the source
#      changes (a few seconds when pip's wheels are cached).
# Cache: $NODETAP_K8S_IMAGES (default ${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/k8s-images).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${NODETAP_K8S_IMAGES:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/k8s-images}
venv=${NODETAP_VENV:-$here/.venv}
suite=bookworm
mirror=${NODETAP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,python3-bpfcc,python3-nftables,iproute2,iptables,conntrack,kmod,ca-certificates,binutils
log() { echo "k8s-lab-images: $*" >&2; }
die() { echo "k8s-lab-images: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap)"

# archive OUT NAME:TAG CONFIG-JSON LAYER-TAR...: a `docker save` archive of the layers
archive() {
  local out=$1 tag=$2 conf=$3
  shift 3
  local d
  d=$(mktemp -d "$cache/archive.XXXXXX")
  local layers=() diffs=() l sum
  for l in "$@"; do
    sum=$(sha256sum "$l" | cut -d' ' -f1)
    mkdir -p "$d/$sum"
    ln "$l" "$d/$sum/layer.tar" 2>/dev/null || cp "$l" "$d/$sum/layer.tar"
    layers+=("\"$sum/layer.tar\"")
    diffs+=("\"sha256:$sum\"")
  done
  local IFS=,
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$conf" "${diffs[*]}" >"$d/config.json"
  sum=$(sha256sum "$d/config.json" | cut -d' ' -f1)
  mv "$d/config.json" "$d/$sum.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' "$sum" "$tag" "${layers[*]}" \
    >"$d/manifest.json"
  tar -C "$d" -cf "$out.tmp" . && mv "$out.tmp" "$out"
  rm -rf "$d"
}

layer_of() { # DIR OUT: a layer tar of DIR's contents, owners by number, reproducible order
  tar -C "$1" --numeric-owner --sort=name --mtime=@0 -cf "$2.tmp" . && mv "$2.tmp" "$2"
}

build_pause() {
  local out=$cache/pause.tar
  [[ -s $out ]] && return
  local d
  d=$(mktemp -d "$cache/pause.XXXXXX")
  mkdir -p "$d/root"
  cat >"$d/pause.c" <<'EOF'
/* The pod sandbox's process, as Kubernetes' build/pause/linux/pause.c: wait for a signal,
   reap children, exit on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void down(int s) { (void)s; exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction d = {.sa_handler = down}, r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &d, NULL) < 0 || sigaction(SIGTERM, &d, NULL) < 0) return 1;
  if (sigaction(SIGCHLD, &r, NULL) < 0) return 3;
  for (;;) pause();
}
EOF
  gcc -Os -static -o "$d/root/pause" "$d/pause.c" || die "building pause failed (gcc, libc6-dev)"
  layer_of "$d/root" "$d/layer.tar"
  archive "$out" nodetap-lab/pause:3.2 '{"Entrypoint":["/pause"],"WorkingDir":"/"}' "$d/layer.tar"
  rm -rf "$d"
}

build_base() { # the Debian layer, cached by its package list
  local key
  key=$(echo "$suite $packages" | sha256sum | cut -c1-12)
  base=$cache/debian-$suite-$key.tar
  [[ -s $base ]] && return
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends debootstrap >/dev/null || die "apt-get install debootstrap failed"
  local d
  d=$(mktemp -d "$cache/rootfs.XXXXXX")
  log "debootstrap $suite ($packages), log: $d.log"
  debootstrap --variant=minbase --include="$packages" "$suite" "$d" "$mirror" >"$d.log" 2>&1 \
    || { tail -20 "$d.log" >&2; rm -rf "$d"; die "debootstrap failed"; }
  rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/lib/apt/lists/* "$d/dev"/*
  layer_of "$d" "$base"
  rm -rf "$d" "$d.log"
}

project_files() { # NUL-separated, sorted: the files of the project that the image installs
  git ls-files -z -co --exclude-standard pyproject.toml README.md nodetap cli agent netsetup \
    replay forwarder bpf proto | sort -z | while IFS= read -r -d '' f; do
    [[ -f $f ]] && printf '%s\0' "$f"
  done
}

build_nodetap() {
  build_base
  [[ -x $venv/bin/python ]] || die "no $venv: run scripts/setup.sh first"
  local py core
  py=$("$venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
  # the Rust core, as scripts/setup.sh built it (maturin) for the same Debian Python
  core=$(compgen -G "$venv/lib/$py/site-packages/nodetap_core/*.so") \
    || die "the Rust core (nodetap_core) is not built in $venv: run scripts/setup.sh first"
  # keyed by the content of every file that goes into the image (tracked or not, edited or
  # not), the Debian layer and the Rust core: a change to the project makes a new image
  local key
  key=$( (cd "$here" && project_files | xargs -0 sha256sum && sha256sum "$base" $core) \
    | sha256sum | cut -c1-12)
  local out=$cache/nodetap-$key.tar
  if [[ ! -s $out ]]; then
    # one project image is kept: the earlier ones (each a full archive) go
    find "$cache" -maxdepth 1 -name 'nodetap-*.tar' ! -name "nodetap-$key.tar" -delete
    local d
    d=$(mktemp -d "$cache/nodetap.XXXXXX")
    local site=$d/root/opt/nodetap/venv/lib/$py/site-packages
    mkdir -p "$site" "$d/root/opt/nodetap/venv/bin" "$d/root/var/lib/nodetap"
    printf 'home = /usr/bin\ninclude-system-site-packages = true\n' >"$d/root/opt/nodetap/venv/pyvenv.cfg"
    ln -s /usr/bin/python3 "$d/root/opt/nodetap/venv/bin/python"
    ln -s python "$d/root/opt/nodetap/venv/bin/python3"
    log "installing the project into the image (pip, log: $d/pip.log)"
    mkdir -p "$d/src"
    (cd "$here" && project_files | tar --null -cf - -T - | tar -C "$d/src" -xf -)
    "$venv/bin/python" -m pip install -q --no-warn-script-location --no-compile --target "$site" "$d/src" \
      >"$d/pip.log" 2>&1 || { tail -20 "$d/pip.log" >&2; die "pip install into the image failed"; }
    rm -rf "$site/nodetap_core"
    cp -r "$venv/lib/$py/site-packages/nodetap_core" "$site/"
    rm -rf "$site/nodetap_core/__pycache__"
    rm -rf "$site/bin"
    printf '#!/opt/nodetap/venv/bin/python\nimport sys\nfrom cli.main import main\nsys.exit(main())\n' \
      >"$d/root/opt/nodetap/venv/bin/nodetap"
    chmod 0755 "$d/root/opt/nodetap/venv/bin/nodetap"
    layer_of "$d/root" "$d/layer.tar"
    archive "$out" nodetap:dev '{"Entrypoint":["/opt/nodetap/venv/bin/nodetap"],"Cmd":["--help"],"WorkingDir":"/","Env":["PATH=/opt/nodetap/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin","PYTHONDONTWRITEBYTECODE=1","PYTHONUNBUFFERED=1"]}' \
      "$base" "$d/layer.tar"
    rm -rf "$d"
  fi
  nodetap_tar=$out
}

case ${1:-} in
  build)
    mkdir -p "$cache"
    build_pause
    build_nodetap
    echo "$cache/pause.tar"
    echo "$nodetap_tar"
    ;;
  *) die "usage: scripts/k8s-lab-images.sh build" ;;
esac
