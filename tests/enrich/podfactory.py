"""Pod objects built with the kubernetes client's models, as the API server would send them."""

from __future__ import annotations

from typing import Any

from kubernetes import client

# the field's name changed in kubernetes-client 34 (pydantic models)
_POD_IPS = "pod_ips" if "pod_ips" in getattr(client.V1PodStatus, "model_fields", {}) else "pod_i_ps"


def make_pod(
    name: str,
    namespace: str = "default",
    *,
    uid: str,
    node: str = "node-1",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    containers: dict[str, str] | None = None,  # name -> "containerd://<id>"
    owner: tuple[str, str] | None = None,  # (kind, name)
    ip: str = "",
    host_network: bool = False,
    phase: str = "Running",
) -> client.V1Pod:
    containers = containers if containers is not None else {"app": ""}
    ips: dict[str, Any] = {_POD_IPS: [client.V1PodIP(ip=ip)] if ip else None}
    owners = None
    if owner:
        owners = [
            client.V1OwnerReference(
                api_version="apps/v1",
                kind=owner[0],
                name=owner[1],
                uid="owner-" + name,
                controller=True,
                block_owner_deletion=True,
            )
        ]
    return client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            uid=uid,
            labels=labels or {},
            annotations=annotations or {},
            owner_references=owners,
        ),
        spec=client.V1PodSpec(
            node_name=node,
            host_network=host_network,
            containers=[client.V1Container(name=c, image="nginx:1.27") for c in containers],
        ),
        status=client.V1PodStatus(
            phase=phase,
            pod_ip=ip or None,
            **ips,
            container_statuses=[
                client.V1ContainerStatus(
                    name=c,
                    container_id=cid or None,
                    image="nginx:1.27",
                    image_id="",
                    ready=True,
                    restart_count=0,
                )
                for c, cid in containers.items()
            ],
        ),
    )
