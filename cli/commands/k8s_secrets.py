"""`nodetap k8s-secrets`: create the forwarder's TLS and token Secrets and the agents' shared
redaction key at install (a Job)."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  nodetap k8s-secrets                          # in the install Job: its own namespace
  nodetap k8s-secrets --namespace nodetap      # from a workstation (kubeconfig)

Existing Secrets are kept (cert-manager's or your own win). To rotate: delete
nodetap-forwarder-tls and nodetap-token, run the Job again, restart the agents and forwarder.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "k8s-secrets",
        help="create the forwarder's TLS and token Secrets and the redaction key (install Job)",
        description="Generate a CA, a server certificate for the forwarder's Service and a "
        "random bearer token and the agents' redaction key, and store them as Kubernetes "
        "Secrets unless they exist.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--namespace", metavar="NS", help="default: the pod's own namespace")
    p.add_argument("--service", default="nodetap-forwarder", help="the forwarder's Service")
    p.add_argument("--tls-secret", default="nodetap-forwarder-tls", metavar="NAME")
    p.add_argument("--token-secret", default="nodetap-token", metavar="NAME")
    p.add_argument("--replay-tls-secret", default="nodetap-replay-agent-tls", metavar="NAME")
    p.add_argument(
        "--redaction-key-secret",
        default="nodetap-redaction-key",
        metavar="NAME",
        help="the redaction key every agent mounts (--redaction-key)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from forwarder import k8s_secrets

    ns = args.namespace or k8s_secrets.namespace_of_pod()
    created = k8s_secrets.ensure_all(
        ns,
        args.service,
        args.tls_secret,
        args.token_secret,
        replay_tls_secret=args.replay_tls_secret,
        redaction_key_secret=args.redaction_key_secret,
    )
    for name, new in created.items():
        print(f"nodetap k8s-secrets: {ns}/{name} {'created' if new else 'exists, kept'}")
    return 0
