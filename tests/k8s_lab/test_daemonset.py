"""The DaemonSet installed for real on the lab's node (daemonset/overlays/k8s-lab, which is
overlays/lab on the host network): the secrets Job runs, the agent's pod (BCC compiling its
programs in the container) becomes Ready on the lab's node, captures the demo pod annotated
for capture (a real server, python3's http.server from Debian, in a Deployment on the host
network) with its identity from the real API, not the pod beside it that is not annotated,
follows a relabelling without restart, and `kubectl delete -k` leaves nothing of it on the
node. The RRPairs are read back from the lab's forwarder with `nodetap export`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_lab.lab import REPO, K8sLab
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.slow]

OVERLAY = REPO / "daemonset" / "overlays" / "k8s-lab"
DEMO = "demo"  # the namespace overlays/lab targets
AGENT = "app.kubernetes.io/component=agent"
PINS = Path("/sys/fs/bpf/nodetap")


def _wait(cond: Callable[[], Any], what: str, timeout: float, on_fail: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {on_fail()}")
        time.sleep(1)


def _agent_pod(lab: K8sLab) -> dict[str, Any]:
    pods = json.loads(lab.kubectl("-n", "nodetap", "get", "pods", "-l", AGENT, "-o", "json"))
    items = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    return items[0] if items else {}


def _ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _describe(lab: K8sLab, ns: str, what: str) -> Callable[[], str]:
    return lambda: lab.kubectl("-n", ns, "describe", *what.split(), check=False)[-3000:]


def _agent_pid(lab: K8sLab, pod_uid: str) -> int:
    """The host PID of the agent's process: the one whose cgroup names the pod's UID."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cg = (d / "cgroup").read_text()
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"pod{pod_uid}" in cg and any(a.endswith(b"/nodetap") for a in argv[:2]):
            return int(d.name)
    return 0


def _bpf_ids_of(pid: int) -> dict[str, set[int]]:
    """The BPF programs and maps a process holds open ({"prog_id": {...}, "map_id": {...}}),
    from its fdinfo (bpftool's pid column needs BTF iterators this kernel's bpftool lacks,
    and names would match other captures running on the machine)."""
    found: dict[str, set[int]] = {"prog_id": set(), "map_id": set()}
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for f in fdinfo.iterdir() if fdinfo.exists() else ():
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key].add(int(value))
    return found


def _bpf_loaded(kind: str, ident: int) -> bool:
    return subprocess.run(["bpftool", kind, "show", "id", str(ident)],
                          capture_output=True).returncode == 0  # fmt: skip


@pytest.fixture(scope="module")
def installed(k8s_lab: K8sLab) -> Iterator[K8sLab]:
    k8s_lab.kubectl("apply", "-k", str(OVERLAY), timeout=120)
    try:
        yield k8s_lab
    finally:
        # waits until the namespace is gone, or the next module's apply would meet it terminating
        k8s_lab.kubectl(
            "delete", "-k", str(OVERLAY), "--ignore-not-found", check=False, timeout=180
        )


def _agent_ready(lab: K8sLab) -> dict[str, Any]:
    return _wait(  # type: ignore[no-any-return]
        lambda: (p := _agent_pod(lab)) and _ready(p) and p,
        "the agent's pod to be Ready", 300,
        _describe(lab, "nodetap", f"pods -l {AGENT}"),
    )  # fmt: skip


def _forwarder_creds(lab: K8sLab, d: Path) -> Path:
    """The forwarder's CA and the token, from the install's Secrets, as files in d."""
    for secret, key, name in (("nodetap-forwarder-tls", "ca\\.crt", "ca.crt"),
                              ("nodetap-token", "token", "token")):  # fmt: skip
        data = lab.kubectl("-n", "nodetap", "get", "secret", secret, "-o",
                           f"jsonpath={{.data.{key}}}")  # fmt: skip
        (d / name).write_bytes(base64.b64decode(data))
        (d / name).chmod(0o600)
    return d


def test_agent_pod_becomes_ready_on_the_lab_node(installed: K8sLab) -> None:
    pod = _agent_ready(installed)
    assert pod["spec"]["nodeName"] == "127.0.0.1"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"


# --- the demo pods ----------------------------------------------------------------------------
APP_NS = "lab-capture"  # not in the lab's targeted namespaces: the annotation decides


def _deployment(name: str, port: int, annotated: bool) -> dict[str, Any]:
    template: dict[str, Any] = {"labels": {"app": name, "tier": "v1"}}
    if annotated:
        template["annotations"] = {"nodetap.io/capture": "true"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": APP_NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": template, "spec": {
                "hostNetwork": True,
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "web", "image": "nodetap:dev", "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1",
                                "--directory", "/etc", str(port)],
                }],
            }},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def demo(installed: K8sLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two Deployments of python3's http.server on the host network in APP_NS: "web"
    annotated nodetap.io/capture=true, "plain" not; the forwarder's CA and token."""
    lab = installed
    ports = {"web": free_port(), "plain": free_port()}
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS}}]
    docs += [_deployment(n, p, n == "web") for n, p in ports.items()]
    lab.kubectl("apply", "-f", "-", stdin="\n".join(json.dumps(d) for d in docs))
    try:
        for port in ports.values():
            wait_for_port("127.0.0.1", port, timeout=120)
        _agent_ready(lab)
        d = _forwarder_creds(lab, tmp_path_factory.mktemp("forwarder"))
        yield {"lab": lab, "ports": ports, "creds": d}
    finally:
        lab.kubectl("delete", "namespace", APP_NS, "--ignore-not-found", "--wait=false",
                    check=False)  # fmt: skip


def _get(port: int, tag: str) -> None:
    subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5",
                    f"http://127.0.0.1:{port}/?t={tag}"], check=False)  # fmt: skip


def _export(demo: dict[str, Any]) -> list[dict[str, Any]]:
    """Every RRPair of the last 10 minutes, from the lab's forwarder (nodetap export)."""
    creds: Path = demo["creds"]
    r = subprocess.run(
        [sys.executable, "-m", "cli", "export", "--forwarder", "127.0.0.1:7070",
         "--tls-ca", str(creds / "ca.crt"), "--token-file", str(creds / "token"),
         "--since", "10m"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _tagged(pairs: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    return [p for p in pairs if f"t={tag}" in p.get("http", {}).get("req", {}).get("url", "")]


def _agent_debug(lab: K8sLab) -> str:
    status = lab.kubectl("-n", "nodetap", "exec", "ds/nodetap-agent", "--", "nodetap",
                         "status", check=False)  # fmt: skip
    logs = lab.kubectl("-n", "nodetap", "logs", "ds/nodetap-agent", "--tail", "30", check=False)
    return f"status:\n{status}\nlogs:\n{logs}"


@pytest.fixture(scope="module")
def traffic(demo: dict[str, Any]) -> dict[str, Any]:
    """Requests to both pods (the not annotated one first each round) until the annotated
    pod's come out of the forwarder, plus one more round; every RRPair exported then."""
    run = uuid.uuid4().hex[:8]
    web, plain = demo["ports"]["web"], demo["ports"]["plain"]
    deadline = time.monotonic() + 120
    rounds = 0
    while True:
        rounds += 1
        _get(plain, f"plain-{run}-{rounds}")
        _get(web, f"web-{run}-{rounds}")
        time.sleep(1)
        if _tagged(_export(demo), f"web-{run}"):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no RRPair of the annotated pod: {_agent_debug(demo['lab'])}")
    _get(plain, f"plain-{run}-last")
    _get(web, f"web-{run}-last")
    pairs = _wait(lambda: (p := _export(demo)) and _tagged(p, f"web-{run}-last") and p,
                  "the last round's RRPair", 60, lambda: _agent_debug(demo["lab"]))  # fmt: skip
    return {"run": run, "pairs": pairs}


def test_annotated_pod_is_captured_with_its_identity_from_the_api(
    demo: dict[str, Any], traffic: dict[str, Any]
) -> None:
    pairs = _tagged(traffic["pairs"], f"web-{traffic['run']}")
    assert pairs
    pod = json.loads(demo["lab"].kubectl("-n", APP_NS, "get", "pods", "-l", "app=web", "-o",
                                         "json"))["items"][0]  # fmt: skip
    for p in pairs:
        meta = p["meta"]
        assert meta["pod"] == pod["metadata"]["name"]
        assert meta["namespace"] == APP_NS
        assert meta["labels"]["app"] == "web" and meta["labels"]["tier"] == "v1"
        assert meta["workload"] == "Deployment/web"  # pod -> ReplicaSet -> Deployment
        assert meta["container"] == "web" and meta["cluster"] == "lab"
        assert p["server"]["port"] == demo["ports"]["web"]
        assert p["direction"] == "INBOUND" and p["http"]["res"]["statusCode"] == 200


def test_agent_captures_under_the_runtime_default_seccomp_profile(
    demo: dict[str, Any], traffic: dict[str, Any]
) -> None:
    """Issue 22's open point: the shipped agent asks for `seccompProfile: RuntimeDefault`;
    containerd's default profile (Debian bookworm's 1.6.20 here) lets bpf() and
    perf_event_open() through with CAP_BPF and CAP_PERFMON: the agent's process runs under
    that seccomp filter, without CAP_SYS_ADMIN, and captured (the traffic fixture)."""
    lab: K8sLab = demo["lab"]
    pod = _agent_pod(lab)
    sc = pod["spec"]["containers"][0]["securityContext"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pid = _agent_pid(lab, pod["metadata"]["uid"])
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert status["Seccomp"].strip() == "2"  # filter mode: the runtime's profile
    assert not int(status["CapEff"], 16) & (1 << 21)  # no CAP_SYS_ADMIN
    assert _tagged(traffic["pairs"], f"web-{traffic['run']}")


def test_pod_not_annotated_is_not_captured(demo: dict[str, Any], traffic: dict[str, Any]) -> None:
    plain = demo["ports"]["plain"]
    assert not _tagged(traffic["pairs"], f"plain-{traffic['run']}")
    assert not [p for p in traffic["pairs"] if p["server"]["port"] == plain]


def test_relabelling_takes_effect_without_restarting_the_agent(
    demo: dict[str, Any], traffic: dict[str, Any]
) -> None:
    lab: K8sLab = demo["lab"]
    agent = _agent_pod(lab)
    lab.kubectl("-n", APP_NS, "label", "pod", "-l", "app=web", "tier=v2", "--overwrite")
    run = uuid.uuid4().hex[:8]
    n = 0

    def relabelled() -> bool:
        nonlocal n
        n += 1
        _get(demo["ports"]["web"], f"relabel-{run}-{n}")
        pairs = _tagged(_export(demo), f"relabel-{run}")
        return any(p["meta"]["labels"].get("tier") == "v2" for p in pairs)

    _wait(relabelled, "an RRPair with the new label", 60, lambda: _agent_debug(lab))
    after = _agent_pod(lab)
    assert after["metadata"]["uid"] == agent["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0


# --- the labs' demo steps: the replay Job (vagrant/demo.sh's step 4) ----------------------
REPLAY_OVERLAY = REPO / "daemonset" / "overlays" / "k8s-lab-replay"
LOAD_GENERATOR = "nodetap.io/load-generator"
REPLAY_AGENT = "app.kubernetes.io/component=replay-agent"


def _replayed_urls(log: str) -> dict[str, int]:
    """How often http.server's access log shows each URL ("GET /?t=x HTTP/1.1" 200)."""
    seen: dict[str, int] = {}
    for line in log.splitlines():
        if '"GET ' in line:
            url = line.split('"GET ', 1)[1].split(" ", 1)[0]
            seen[url] = seen.get(url, 0) + 1
    return seen


def test_lab_replay_job_replays_the_captured_pairs_against_the_pod(
    demo: dict[str, Any], traffic: dict[str, Any]
) -> None:
    """Issue 26's item 5: the Vagrant lab's steps on this lab. The node is labelled as
    vagrant/provision-k8s.sh does; the lab's replay agent (Pending until then) becomes Ready;
    the replay Job of overlays/lab-replay (here k8s-lab-replay: Service names through
    /etc/hosts) fetches the captured RRPairs from the forwarder and replays them against the
    annotated pod, whose own access log then shows every captured request a second time.
    Before overlays/lab-replay, daemonset/replay's Job stayed Pending on a one-node lab
    (2 CPUs asked, anti-affinity with the replay agent, an image the lab does not have)."""
    lab: K8sLab = demo["lab"]
    port = demo["ports"]["web"]
    lab.kubectl("label", "node", "127.0.0.1", f"{LOAD_GENERATOR}=true", "--overwrite")
    try:
        _wait(
            lambda: any(_ready(p) for p in json.loads(lab.kubectl(
                "-n", "nodetap", "get", "pods", "-l", REPLAY_AGENT, "-o", "json"))["items"]),
            "the replay agent's pod to be Ready", 180,
            _describe(lab, "nodetap", f"pods -l {REPLAY_AGENT}"),
        )  # fmt: skip
        captured = {
            p["http"]["req"]["url"] for p in _tagged(_export(demo), f"web-{traffic['run']}")
        }
        assert captured
        job = lab.kubectl("kustomize", str(REPLAY_OVERLAY))
        assert "--target=http://demo.demo.svc:80" in job
        # the demo service's port here is the test pod's (the Vagrant lab's demo listens on 80)
        job = job.replace(
            "--target=http://demo.demo.svc:80", f"--target=http://demo.demo.svc:{port}"
        )
        lab.kubectl("apply", "-f", "-", stdin=job)
        describe = _describe(lab, "nodetap", "job nodetap-replay")
        done = _wait(
            lambda: [c["type"] for c in json.loads(lab.kubectl(
                "-n", "nodetap", "get", "job", "nodetap-replay", "-o", "json",
            )).get("status", {}).get("conditions", []) if c["status"] == "True"],
            "the replay Job to finish", 300, describe,
        )  # fmt: skip
        report = lab.kubectl("-n", "nodetap", "logs", "job/nodetap-replay", "-c", "replay")
        assert done == ["Complete"], f"{done}: {report}\n{describe()}"
        lines = {ln.split(maxsplit=1)[0]: ln for ln in report.splitlines() if ln.strip()}
        assert lines["errors"].split()[1] == "0", report
        assert int(lines["requests"].split()[1]) >= len(captured), report
        assert lines["mismatches"].split()[1] == "0", report
        log = lab.kubectl("-n", APP_NS, "logs", "deploy/web")
        twice = {url for url, n in _replayed_urls(log).items() if n >= 2}
        assert captured <= twice, f"not replayed: {sorted(captured - twice)}"
    finally:
        lab.kubectl("-n", "nodetap", "delete", "job", "nodetap-replay", "--ignore-not-found",
                    check=False, timeout=120)  # fmt: skip
        lab.kubectl("label", "node", "127.0.0.1", f"{LOAD_GENERATOR}-", check=False)


def _nodetap_rules() -> list[str]:
    """Rules of nodetap's on the node: nft tables, iptables rules, tc filters on loopback."""
    found = []
    for cmd in (["nft", "list", "ruleset"], ["iptables-save"], ["ip6tables-save"],
                ["tc", "filter", "show", "dev", "lo", "ingress"],
                ["tc", "filter", "show", "dev", "lo", "egress"]):  # fmt: skip
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except FileNotFoundError:
            continue
        found += [f"{cmd[0]}: {line}" for line in out.splitlines() if "nodetap" in line]
    return found


def test_uninstall_leaves_no_bpf_program_pin_or_rule(demo: dict[str, Any]) -> None:
    """Last in this module: `kubectl delete -k` removes the installation; the agent's pod
    stops (SIGTERM: it detaches its programs and removes its pins) and nothing of it stays."""
    lab: K8sLab = demo["lab"]
    pod = _agent_pod(lab)
    pid = _agent_pid(lab, pod["metadata"]["uid"])
    assert pid, "the agent's process not found on the node"
    held = _bpf_ids_of(pid)
    assert held["prog_id"], "the agent holds no BPF program"
    lab.kubectl("delete", "-k", str(OVERLAY), "--ignore-not-found", timeout=180)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), "the agent's process to end", 60,
          lambda: "")  # fmt: skip
    assert not lab.kubectl("get", "namespace", "nodetap", "--ignore-not-found").strip()
    left = [i for i in held["prog_id"] if _bpf_loaded("prog", i)]
    assert not left, f"BPF programs of the agent still loaded: {left}"
    left = [i for i in held["map_id"] if _bpf_loaded("map", i)]
    assert not left, f"BPF maps of the agent still there: {left}"
    assert not (PINS.exists() and any(PINS.iterdir())), sorted(PINS.iterdir())
    for events in ("uprobe_events", "kprobe_events"):
        f = Path("/sys/kernel/tracing") / events
        text = f.read_text() if f.exists() else ""
        assert f"bcc_{pid}" not in text, f"probes of the agent left in {f}"
    assert not _nodetap_rules()
