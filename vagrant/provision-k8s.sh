#!/usr/bin/env bash
# Step 1 of the lab: a single-node Kubernetes (MicroK8s from its snap) plus what BCC needs on
# the node (kernel headers, tracefs). Idempotent.
set -euo pipefail
channel="${K8S_CHANNEL:-1.32/stable}"
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends "linux-headers-$(uname -r)" docker.io jq >/dev/null
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing

if ! snap list microk8s >/dev/null 2>&1; then
  snap install microk8s --classic --channel="$channel"
fi
microk8s status --wait-ready >/dev/null
microk8s enable dns hostpath-storage metrics-server >/dev/null
# plain `kubectl` for the other steps and for `vagrant ssh`
snap alias microk8s.kubectl kubectl >/dev/null 2>&1 || true
usermod -a -G microk8s vagrant
mkdir -p /home/vagrant/.kube
microk8s config > /home/vagrant/.kube/config
chown -R vagrant:vagrant /home/vagrant/.kube
# The lab's one node is also where replays run (a real cluster keeps generators apart).
node=$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')
kubectl label node "$node" nodetap.io/load-generator=true --overwrite >/dev/null
echo "kubernetes: $(kubectl version -o json | jq -r .serverVersion.gitVersion) on $node"
