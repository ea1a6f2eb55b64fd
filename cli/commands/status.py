"""`nodetap status`: per pod of a node, whether nodetap captures it, and when not, why."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cli.options import units
from cli.options.output import add_format_argument, dump_structured
from nodetap.errors import ConfigError, PeerError
from nodetap.metrics_http import DEFAULT_METRICS_ADDR

EPILOG = f"""\
examples:
  nodetap status                             # ask the agent here ({DEFAULT_METRICS_ADDR})
  nodetap status --url http://10.0.3.7:9464  # another agent's metrics address
  nodetap status -o json                     # the agent's /status document as JSON
  nodetap status --local --config agent.yaml # compute it here from the API and cgroups
  kubectl -n nodetap exec ds/nodetap-agent -- nodetap status

Each pod of the node is listed with CAPTURED yes/no and the reason: which annotation, label,
namespace or config selector targets it, or why it is skipped (not targeted, opted out,
no cgroup yet, cgroup v2 missing) plus what the capture noted (protocol not recognised,
TLS library not hooked, ...).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "status",
        help="which pods of the node are captured, and why (not)",
        description="Show, per pod on a node, whether the nodetap agent captures it and why.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url",
        default=f"http://{DEFAULT_METRICS_ADDR}",
        help="the agent's metrics/health address (default %(default)s)",
    )
    add_format_argument(p, ("table", "json", "yaml"), "table", help="table, json or yaml")
    p.add_argument("--captured", action="store_true", help="list only captured pods")
    p.add_argument(
        "--local",
        action="store_true",
        help="do not ask the agent: read this node's pods from the API and the cgroup tree here",
    )
    p.add_argument("--config", metavar="FILE", help="agent config (YAML) with a targeting: section")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig for --local")
    p.add_argument("--node", default="", help="node name for --local (default $NODE_NAME or host)")
    p.add_argument(
        "--timeout",
        type=units.positive_duration,
        default=5.0,
        metavar="TIME",
        help="how long to wait (default 5s)",
    )
    p.set_defaults(func=run)


def fetch(url: str, timeout: float) -> dict[str, Any]:
    target = url.rstrip("/")
    if not target.startswith(("http://", "https://")):
        target = "http://" + target
    if not target.endswith("/status"):
        target += "/status"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise PeerError(
            f"the agent at {url} answered {e.code} for /status; "
            "is it a nodetap agent with targeting on?"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PeerError(
            f"cannot reach the agent at {url} ({reason}); is it running? "
            "pass --url, or --local to compute the status here"
        ) from None
    except json.JSONDecodeError:
        raise PeerError(
            f"{target} did not return JSON; is --url the agent's metrics address?"
        ) from None
    if isinstance(doc, list):
        doc = {"pods": doc}
    if not isinstance(doc, dict):
        raise PeerError(f"{target} returned an unexpected document; is it a nodetap agent?")
    return doc


def compute_locally(args: argparse.Namespace) -> dict[str, Any]:
    from agent.enrich import Enricher
    from agent.targeting import Targeting, TargetingConfig, status_document

    section: Any = None
    if args.config:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except OSError as e:
            raise ConfigError(
                f"cannot read {args.config}: {e.strerror}; pass an existing --config"
            ) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{args.config} is not valid YAML ({e}); fix it") from None
        section = loaded.get("targeting") if isinstance(loaded, dict) else None
    config = TargetingConfig.from_dict(section)
    enricher = Enricher.from_environment(node=args.node, kubeconfig=args.kubeconfig, peers=False)
    try:
        if not enricher.in_cluster:
            raise ConfigError(
                "no Kubernetes configuration (not in a pod, no kubeconfig); "
                "pass --kubeconfig or run where the agent runs"
            )
        deadline = time.monotonic() + args.timeout
        while not enricher.ready():
            if time.monotonic() > deadline:
                raise PeerError(
                    f"could not list the pods of node {enricher.node} within "
                    f"{args.timeout:g}s; check the API server and RBAC"
                )
            time.sleep(0.05)
        assert enricher.pods is not None
        targeting = Targeting(enricher.pods, config)
        return status_document(targeting, node=enricher.node, cluster=enricher.cluster)
    finally:
        enricher.close()


def render_table(doc: dict[str, Any], captured_only: bool = False) -> str:
    pods = [p for p in doc.get("pods", []) if p.get("captured") or not captured_only]
    head = []
    if doc.get("node"):
        t = doc.get("targeting", {})
        head.append(
            f"node {doc['node']}"
            + (f" (cluster {doc['cluster']})" if doc.get("cluster") else "")
            + (f", agent {doc['agent_version']}" if doc.get("agent_version") else "")
            + (f", targeting {t.get('mode')}" if t.get("mode") else "")
            + f", {sum(1 for p in doc.get('pods', []) if p.get('captured'))} of "
            f"{len(doc.get('pods', []))} pods captured"
        )
    rows = [("NAMESPACE", "POD", "CAPTURED", "REASON")]
    for p in pods:
        reason = str(p.get("reason", ""))
        notes = p.get("notes") or {}
        if notes:
            reason += "; " + "; ".join(str(v) for _, v in sorted(notes.items()))
        rows.append(
            (
                str(p.get("namespace", "")),
                str(p.get("pod", "")),
                "yes" if p.get("captured") else "no",
                reason,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = head + ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    if not pods:
        lines.append("(no pods on this node)" if not captured_only else "(no pod captured)")
    lines += _tls_table(doc.get("tls"))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _tls_table(tls: Any) -> list[str]:
    """The capture's TLS coverage, per process (issue 21): library, hooked or not and why."""
    if not isinstance(tls, list) or not tls:
        return []
    rows = [("PID", "COMM", "POD", "LIBRARY", "HOOKED", "WHY")]
    for r in tls:
        pod = f"{r.get('namespace', '')}/{r.get('pod', '')}" if r.get("pod") else "-"
        hooked = "yes" if r.get("state") == "hooked" else "no"
        rows.append(
            (str(r.get("pid", "")), str(r.get("comm", "")), pod, str(r.get("library", "")),
             hooked, str(r.get("reason", "")))
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return ["", "TLS"] + [
        "  ".join(row[i].ljust(widths[i]) for i in range(5)) + "  " + row[5] for row in rows
    ]


def run(args: argparse.Namespace) -> int:
    doc = compute_locally(args) if args.local else fetch(args.url, args.timeout)
    if args.format in ("json", "yaml"):
        sys.stdout.write(dump_structured(doc, args.format))
    else:
        sys.stdout.write(render_table(doc, captured_only=args.captured))
    return 0
