#!/usr/bin/env bash
# Step 3 of the lab: apply daemonset/overlays/lab and wait until the agent and the forwarder
# are ready (the agent's readiness probe is /readyz: programs loaded, pod list read).
set -euo pipefail
cd /vagrant
kubectl apply -k daemonset/overlays/lab
kubectl -n nodetap rollout status daemonset/nodetap-agent --timeout=300s
kubectl -n nodetap rollout status deployment/nodetap-forwarder --timeout=300s
kubectl -n nodetap get pods -o wide
