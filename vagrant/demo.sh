#!/usr/bin/env bash
# Step 4 of the lab: deploy the demo app, show what nodetap captures (nodetap status), export
# the RRPairs from the forwarder, replay them with the replay Job, print the report.
set -euo pipefail
cd /vagrant
kubectl apply -f vagrant/demo.yaml
kubectl -n demo rollout status deployment/demo --timeout=180s
kubectl -n demo rollout status deployment/demo-client --timeout=180s

echo "== what the agent captures on this node"
sleep 10
kubectl -n nodetap exec ds/nodetap-agent -- nodetap status

echo "== the captured RRPairs (last minute, first 3)"
kubectl -n nodetap exec deploy/nodetap-forwarder -- \
  nodetap export --forwarder 127.0.0.1:7070 --tls-ca /etc/nodetap/tls/ca.crt \
    --token-file /etc/nodetap/token/token --since 1m | head -n 3

echo "== replay them against the demo service"
kubectl -n nodetap delete job nodetap-replay --ignore-not-found
kubectl kustomize daemonset/overlays/lab-replay | kubectl apply -f -
kubectl -n nodetap wait --for=condition=complete job/nodetap-replay --timeout=600s \
  || kubectl -n nodetap wait --for=condition=failed job/nodetap-replay --timeout=1s || true
kubectl -n nodetap logs job/nodetap-replay -c replay
