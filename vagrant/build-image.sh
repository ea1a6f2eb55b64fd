#!/usr/bin/env bash
# Step 2 of the lab: build the nodetap image from the checkout (/vagrant) and import it into
# MicroK8s' containerd, so the lab overlay's image nodetap:dev needs no registry.
set -euo pipefail
cd /vagrant
docker build -q -t nodetap:dev . >/dev/null
docker save nodetap:dev | microk8s ctr image import - >/dev/null
echo "image: nodetap:dev imported"
