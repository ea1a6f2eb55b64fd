# The lab's node, sourced by scripts/k8s-lab.sh: kube-scheduler, containerd (+ runc) and a
# kubelet on loopback. Pods use the host network (no CNI: pod addresses would leave loopback),
# the cgroup driver is cgroupfs (no systemd here) under a cgroup root of the lab's own, so that
# `down` can remove every cgroup the kubelet and runc made. Images come from
# scripts/k8s-lab-images.sh (nothing is pulled).
# Uses from k8s-lab.sh: $state $data $node $api_port $kubelet_port $sched_port, start, running,
# wait_ready, stop_pid_of, log, die.

cgroup_root=nodetap-lab
# containerd's images and unpacked snapshots outlive the lab (importing and unpacking the
# nodetap image takes minutes on a loaded machine): no container or mount is left there
ctrd_root=${NODETAP_K8S_CONTAINERD_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/k8s-containerd}
sock() { echo "$state/containerd.sock"; }
ctr_() { ctr -a "$(sock)" -n k8s.io "$@"; }

write_containerd_config() {
  mkdir -p "$state/cni/net.d" "$state/cni/bin" "$ctrd_root"
  # Only hostNetwork pods run here, for which containerd never calls a CNI plugin; this
  # network list (with no plugin binary) only makes the runtime report its network ready.
  echo '{"cniVersion":"0.4.0","name":"nodetap-lab","plugins":[{"type":"loopback"}]}' \
    >"$state/cni/net.d/10-nodetap-lab.conflist"
  cat >"$state/containerd.toml" <<EOF
version = 2
root = "$ctrd_root"
state = "$state/containerd"
[grpc]
  address = "$(sock)"
[ttrpc]
  address = "$(sock).ttrpc"
[debug]
  address = "$(sock).debug"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/nodetap-lab/pause:3.2"
  # this machine does not let a process lower its OOM score adjustment
  restrict_oom_score_adj = true
  # a pod that is not on the host network (overlays/lab's, which tests/k8s_lab applies) gets
  # a network namespace even though no CNI plugin runs: made under the lab's state, where
  # down unmounts and removes it, not in /run/netns where each run left one
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "$state/cni/net.d"
    bin_dir = "$state/cni/bin"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
}

write_kubelet_config() {
  cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((kubelet_port - 2))
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
cgroupsPerQOS: true
failSwapOn: false
makeIPTablesUtilChains: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $state/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $state/pki/kubelet.crt
tlsPrivateKeyFile: $state/pki/kubelet.key
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
EOF
}

# every cgroup v1 hierarchy (and the v2 one) the kubelet may create its root in
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/mounts
}

# host folders the kubelet and containerd use whatever their configuration says (the pods'
# logs, shim sockets and runc's state): the ones the lab made are removed by `down`
host_dirs=(/var/log/pods /var/log/containers /run/containerd)

start_node() {
  ensure_packages containerd runc
  local d
  for d in "${host_dirs[@]}"; do [[ -e $d ]] || echo "$d" >>"$state/made-dirs"; done
  # containerd makes a cgroup named for its namespace (k8s.io) in every hierarchy
  for d in $(cgroup_hierarchies); do [[ -e $d/k8s.io ]] || echo "$d/k8s.io" >>"$state/made-cgroups"; done
  # the BPF filesystem, where a node's init system mounts it (the agent pins under it)
  if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf || die "cannot mount the BPF filesystem on /sys/fs/bpf"
    touch "$state/mounted-bpffs"
  fi
  start kube-scheduler "$cache/bin/kube-scheduler" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --port 0 \
    --kubeconfig "$state/scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/scheduler.kubeconfig" --leader-elect=false
  write_containerd_config
  start containerd containerd --config "$state/containerd.toml"
  wait_ready containerd 30 ctr_ version
  local tars
  tars=$("$here/scripts/k8s-lab-images.sh" build) || die "building the lab's images failed"
  local t
  for t in $tars; do
    grep -qxF "$t" "$ctrd_root/imported" 2>/dev/null && continue
    ctr_ images import --no-unpack "$t" >/dev/null || die "ctr images import $t failed"
    echo "$t" >>"$ctrd_root/imported"
  done
  local h
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h/$cgroup_root" 2>/dev/null || true
  done
  write_kubelet_config
  mkdir -p "$data/kubelet"
  start kubelet "$cache/bin/kubelet" --config "$state/kubelet.yaml" \
    --kubeconfig "$state/kubelet.kubeconfig" --hostname-override "$node" \
    --container-runtime remote --container-runtime-endpoint "unix://$(sock)" \
    --root-dir "$data/kubelet" --cert-dir "$state/pki" \
    --pod-infra-container-image docker.io/nodetap-lab/pause:3.2 --v 1
  wait_ready kubelet 120 node_ready
}

node_ready() {
  [[ $(kubectl --kubeconfig "$state/admin.kubeconfig" get node "$node" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

stop_node() {
  stop_pid_of kubelet
  stop_pid_of kube-scheduler
  if running containerd; then
    # the pods' containers and sandboxes: their tasks, then containerd's records of them
    local c
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ tasks ls -q 2>/dev/null); do
      for _ in $(seq 50); do ctr_ tasks rm -f "$c" >/dev/null 2>&1 && break; sleep 0.1; done
    done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1 || true; done
  fi
  stop_pid_of containerd
  # mounts the kubelet and containerd made (secret volumes, sandbox /dev/shm, rootfs overlays)
  local m
  for _ in 1 2 3; do
    for m in $(awk -v s="$state" -v d="$data" -v c="$ctrd_root" \
      'index($5, s) == 1 || index($5, d) == 1 || index($5, c) == 1 { print $5 }' \
      /proc/self/mountinfo | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  # the cgroups under the lab's root, deepest first (empty once the tasks are gone)
  local h
  for h in $(cgroup_hierarchies); do
    [[ -d $h/$cgroup_root ]] || continue
    find "$h/$cgroup_root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  local d
  if [[ -f $state/made-cgroups ]]; then
    while read -r d; do
      [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done <"$state/made-cgroups"
  fi
  rm -rf "$data"
  if [[ -f $state/mounted-bpffs ]]; then
    rmdir /sys/fs/bpf/nodetap 2>/dev/null || true
    umount /sys/fs/bpf 2>/dev/null || log "/sys/fs/bpf still in use: left mounted"
  fi
  if [[ -f $state/made-dirs ]]; then
    while read -r d; do rm -rf "$d"; done <"$state/made-dirs"
  fi
}
