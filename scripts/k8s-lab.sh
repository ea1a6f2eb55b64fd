#!/usr/bin/env bash
# A real single-node Kubernetes cluster on loopback, from Debian's packages and sources,
# for the tests under tests/k8s_lab (issue 26). As root:
#
#   scripts/k8s-lab.sh build        # once: build the server binaries (cached, see below)
#   scripts/k8s-lab.sh up           # start etcd, kube-apiserver, kube-controller-manager,
#                                   # kube-scheduler, containerd and a kubelet (node 127.0.0.1)
#   scripts/k8s-lab.sh kubeconfig   # print the path of the admin kubeconfig
#   scripts/k8s-lab.sh status       # which lab processes run
#   scripts/k8s-lab.sh restart-apiserver   # stop and start the API server (watch tests)
#   scripts/k8s-lab.sh down         # stop them (by pid) and remove the lab's state
#
# Why built from source: nothing can be pulled from an image registry or downloaded as a
# release binary here; Debian bookworm's source package `kubernetes` (1.20.2) is the last Debian
# source with the server components, and Debian has Go 1.19, etcd, containerd and runc.
# The vendored github.com/modern-go/reflect2 v1.0.1 crashes with Go >= 1.18: Debian's 1.0.2
# copy replaces it.
#
# The build (about five minutes per binary on one core; the node's binaries, kube-scheduler and
# kubelet, are built apart from the control plane's and added to the same cache) is cached in a
# directory keyed by the Debian source version, so a machine that built it once starts the lab
# in seconds:
#   $NODETAP_K8S_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/k8s-<version>)
# The running lab keeps its certificates, etcd data and logs in $NODETAP_K8S_STATE (default
# /run/nodetap-k8s-lab), containerd's images and the kubelet's pods in $NODETAP_K8S_DATA (default
# /var/lib/nodetap-k8s-lab); `down` removes both, and every mount, cgroup and process the lab
# made. Ports (loopback only): etcd 127.0.0.1:23790 (peer +10, $NODETAP_K8S_ETCD_PORT), API
# server 16443 ($NODETAP_K8S_API_PORT), controller-manager 10257 and scheduler 10259
# ($NODETAP_K8S_CM_PORT), kubelet 10250 and its healthz 10248 ($NODETAP_K8S_KUBELET_PORT).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state=${NODETAP_K8S_STATE:-/run/nodetap-k8s-lab}
api_port=${NODETAP_K8S_API_PORT:-16443}
etcd_port=${NODETAP_K8S_ETCD_PORT:-23790}
etcd_peer_port=$((etcd_port + 10))
cm_port=${NODETAP_K8S_CM_PORT:-10257}
sched_port=$((cm_port + 2))
kubelet_port=${NODETAP_K8S_KUBELET_PORT:-10250}
# node data on disk (containerd's images and snapshots, the kubelet's pods), removed by `down`
data=${NODETAP_K8S_DATA:-/var/lib/nodetap-k8s-lab}
# The node's name is its address: a kubelet refuses a loopback --node-ip, but takes an address
# given as its hostname as is (a name would make it report the host's outward address, where
# the API server would then look for the kubelet, which listens on loopback only).
node=127.0.0.1
# The control plane, then the node's binaries (built separately, so a cache with the control
# plane from an earlier build is reused and only the node's are added).
control_bins=(kube-apiserver kube-controller-manager)
node_bins=(kube-scheduler kubelet)
bins=("${control_bins[@]}" "${node_bins[@]}")
log() { echo "k8s-lab: $*" >&2; }
die() { echo "k8s-lab: $*" >&2; exit 1; }

# shellcheck source=scripts/k8s-lab-node.sh
. "$here/scripts/k8s-lab-node.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (the lab binds ports, writes $state and may install packages)"

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null || die "apt-get install ${missing[*]} failed"
  fi
}

# `apt-get source` needs deb-src lines: one file of ours, mirroring the machine's deb822 sources.
ensure_deb_src() {
  local f=/etc/apt/sources.list.d/nodetap-deb-src.sources
  if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Version:'; then
    [[ -e $f ]] || {
      local src=/etc/apt/sources.list.d/debian.sources
      [[ -r $src ]] || die "no $src to derive deb-src lines from; add a deb-src line for bookworm"
      sed 's/^Types: deb$/Types: deb-src/' "$src" >"$f"
    }
    apt-get update -qq >/dev/null || die "apt-get update failed"
  fi
}

src_version() {
  apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

cache_dir() {
  local v
  v=$(src_version)
  [[ -n $v ]] || die "Debian's kubernetes source package not found (deb-src missing?)"
  echo "${NODETAP_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/k8s-$v}"
}

cmd_build() {
  ensure_packages dpkg-dev golang-1.19-go golang-github-modern-go-reflect2-dev rsync jq \
    etcd-server openssl
  ensure_deb_src
  local cache
  cache=$(cache_dir)
  local b todo=()
  for b in "${bins[@]}"; do [[ -x $cache/bin/$b ]] || todo+=("$b"); done
  if ((${#todo[@]} == 0)); then
    log "binaries cached in $cache"
    "$here/scripts/k8s-lab-images.sh" build >/dev/null
    return
  fi
  mkdir -p "$cache"
  local work
  work=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "fetching Debian's kubernetes source ($(src_version))"
  (cd "$work" && apt-get source -qq --download-only kubernetes >/dev/null 2>&1 \
    && dpkg-source -q -x --no-check ./*.dsc src >/dev/null) || die "apt-get source kubernetes failed"
  rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/"
  log "building ${todo[*]} (about five minutes a binary on one core; log: $work/build.log)"
  local t0=$SECONDS
  (cd "$work/src" && env -u GOFLAGS PATH="/usr/lib/go-1.19/bin:$PATH" HOME="$work/home" \
    GOCACHE="$cache/gocache" KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean \
    make WHAT="${todo[*]/#/cmd/}" >"$work/build.log" 2>&1) \
    || { tail -30 "$work/build.log" >&2; die "building ${todo[*]} failed"; }
  mkdir -p "$cache/bin"
  for b in "${todo[@]}"; do install -m 0755 "$work/src/_output/bin/$b" "$cache/bin/$b"; done
  rm -rf "$cache/gocache"
  log "built ${todo[*]} in $((SECONDS - t0)) s, into $cache/bin"
  trap - EXIT
  rm -rf "$work"
  "$here/scripts/k8s-lab-images.sh" build >/dev/null
}

# --- certificates --------------------------------------------------------------------------
cert() { # name CN O [SANs]: a client/server certificate signed by the lab CA
  local name=$1 cn=$2 org=$3 sans=${4:-}
  local d=$state/pki
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null
  local subj="/CN=$cn"
  [[ -n $org ]] && subj="/O=$org/CN=$cn"
  openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
  local ext="$d/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -extfile "$ext" -out "$d/$name.crt" 2>/dev/null
  rm -f "$d/$name.csr" "$ext"
}

kubeconfig_for() { # name cert: a kubeconfig authenticating with pki/cert.{crt,key}
  local name=$1 c=$2
  cat >"$state/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    certificate-authority: $state/pki/ca.crt
    server: https://127.0.0.1:$api_port
users:
- name: $name
  user:
    client-certificate: $state/pki/$c.crt
    client-key: $state/pki/$c.key
contexts:
- name: lab
  context: {cluster: lab, user: $name}
current-context: lab
EOF
}

make_pki() {
  local d=$state/pki
  mkdir -p "$d"
  chmod 0700 "$state" "$d"
  openssl genrsa -out "$d/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=nodetap-lab-ca" -days 30 -out "$d/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  cert admin admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kubelet "system:node:$node" system:nodes "IP:127.0.0.1,DNS:localhost"
  cert etcd etcd "" "IP:127.0.0.1,DNS:localhost"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  kubeconfig_for admin admin
  kubeconfig_for controller-manager controller-manager
  kubeconfig_for scheduler scheduler
  kubeconfig_for kubelet kubelet
}

# --- processes -----------------------------------------------------------------------------
start() { # name argv...: start in the background, pid in $state/name.pid, log in $state/name.log
  local name=$1
  shift
  "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

# The pid the lab recorded for a process, if that pid is still the program the lab started:
# after a killed run (a machine's session ending, say) the pid may belong to someone else now.
pid_of() {
  local pid exe
  [[ -f $state/$1.pid ]] || return 1
  pid=$(cat "$state/$1.pid")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $(basename "${exe% (deleted)}") == "$1" ]] || return 1
  echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

wait_ready() { # what seconds command...
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what not ready after ${secs}s (log: $state/$what.log)"
    sleep 0.5
  done
}

start_apiserver() {
  local cache=$1 pki=$state/pki
  start kube-apiserver "$cache/bin/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --etcd-servers "https://127.0.0.1:$etcd_port" --etcd-cafile "$pki/ca.crt" \
    --etcd-certfile "$pki/etcd.crt" --etcd-keyfile "$pki/etcd.key" \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/24 --authorization-mode Node,RBAC \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --allow-privileged=true --enable-admission-plugins NodeRestriction
  wait_ready kube-apiserver 90 kubectl --kubeconfig "$state/admin.kubeconfig" get --raw /readyz
}

stop_pid_of() { # name: SIGTERM, then SIGKILL after 5 s, by the pid the lab recorded
  local pid
  if ! pid=$(pid_of "$1"); then
    rm -f "$state/$1.pid"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$state/$1.pid"
}

cmd_restart_apiserver() {
  running kube-apiserver || die "the lab is not up"
  stop_pid_of kube-apiserver
  start_apiserver "$(cache_dir)"
}

cmd_up() {
  ensure_packages etcd-server openssl
  local cache
  cache=$(cache_dir)
  local b
  for b in "${bins[@]}"; do
    [[ -x $cache/bin/$b ]] || die "$b not built: run scripts/k8s-lab.sh build first"
  done
  if running kube-apiserver; then log "already up"; return; fi
  if [[ -e $state || -e $data ]]; then
    # a lab that was not brought down (its processes killed with the machine's session, say)
    # left mounts (secret volumes, containerd's network namespaces), cgroups and folders:
    # removed first, or removing its state fails on a busy mount
    log "removing what an earlier lab left"
    cmd_down
  fi
  mkdir -p "$state"
  make_pki
  local pki=$state/pki
  start etcd etcd --name lab --data-dir "$state/etcd" \
    --listen-client-urls "https://127.0.0.1:$etcd_port" --advertise-client-urls "https://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "lab=http://127.0.0.1:$etcd_peer_port" \
    --cert-file "$pki/etcd.crt" --key-file "$pki/etcd.key" --client-cert-auth --trusted-ca-file "$pki/ca.crt"
  start_apiserver "$cache"
  start kube-controller-manager "$cache/bin/kube-controller-manager" \
    --bind-address 127.0.0.1 --secure-port "$cm_port" --kubeconfig "$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --use-service-account-credentials --leader-elect=false
  # the controller-manager makes the service-account token controller's tokens: wait for the
  # default namespace's account, which is what manifests applied next need
  wait_ready kube-controller-manager 60 \
    kubectl --kubeconfig "$state/admin.kubeconfig" -n default get serviceaccount default
  start_node
  log "up: kubectl --kubeconfig $state/admin.kubeconfig"
}

cmd_down() {
  local name
  stop_node
  for name in kube-controller-manager kube-apiserver etcd; do stop_pid_of "$name"; done
  rm -rf "$state" 2>/dev/null || die "cannot remove $state: a mount under it is still busy (grep $state /proc/self/mountinfo), unmount it and run down again"
}

cmd_status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
    if running "$name"; then echo "$name running (pid $(cat "$state/$name.pid"))"; else echo "$name stopped"; fi
  done
}

case ${1:-} in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart-apiserver) cmd_restart_apiserver ;;
  kubeconfig) [[ -f $state/admin.kubeconfig ]] || die "the lab is not up"; echo "$state/admin.kubeconfig" ;;
  *) die "usage: scripts/k8s-lab.sh build|up|down|status|kubeconfig|restart-apiserver" ;;
esac
