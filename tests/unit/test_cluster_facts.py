"""setup-cluster facts on recorded outputs (tests/data/facts/cluster/*.json): each file holds the
fact, its arguments, the exact command it sends, where the output was recorded (``source``), the
output and the expected parse."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.errors import OperationError
from labkit.facts import cluster
from labkit.facts.base import FactResult
from factdata import plain

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"
CASES = sorted((DATA / "cluster").glob("*.json"))


def result_of(case: dict) -> FactResult:
    stdout = case["stdout"] if isinstance(case["stdout"], str) else json.dumps(case["stdout"], indent=4)
    return FactResult(stdout, case.get("stderr", ""), case["exited"])


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fact_parses_recorded_output(path):
    case = json.loads(path.read_text())
    fact = getattr(cluster, case["fact"])(*case["args"])
    assert fact.build() == case["command"]
    assert case["exited"] in fact.ok_exit_codes, "a recorded exit code the fact would reject"
    assert plain(fact.process(result_of(case))) == case["expected"]


def test_every_fact_has_recorded_outputs():
    recorded = {json.loads(p.read_text())["fact"] for p in CASES}
    assert recorded == {"InstalledVersions", "Swaps", "CgroupVersion", "ClusterMembership", "ClusterNodes",
                        "Routes", "ForwardRules", "KubeadmErrors"}


def test_seed_nodes_give_pod_cidrs_and_readiness():
    """The Nodes recorded for the kube facts (seed addresses, node02 stopped) through ClusterNodes."""
    case = json.loads((DATA / "kube" / "nodes.json").read_text())
    nodes = cluster.ClusterNodes().process(result_of(case))
    assert [(n.name, n.internal_ip, n.pod_cidr, n.ready) for n in nodes] == [
        ("master", "192.168.20.6", "10.244.0.0/24", True),
        ("node01", "192.168.20.7", "10.244.1.0/24", True),
        ("node02", "192.168.20.8", "10.244.2.0/24", False),
    ]
    assert nodes[2].ready_message == "Kubelet stopped posting node status."


def test_ca_hash_is_kubeadms_pin():
    """The twin's CA, hashed as `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum` did."""
    case = json.loads((DATA / "cluster" / "membership-twin-master.json").read_text())
    assert cluster.ClusterMembership().process(result_of(case)).admin.ca_hash == \
        "sha256:57a88986b2244795e7190b25d7701bd7902a2013e4f5fdf4f9aa1cf29f150b52"


def test_damaged_ca_data_is_an_error_naming_the_file():
    out = "## kubelet.conf\n    certificate-authority-data: bm90IGEgY2VydA==\n    server: https://10.0.0.1:6443\n"
    with pytest.raises(OperationError, match="/etc/kubernetes/kubelet.conf: certificate-authority-data"):
        cluster.ClusterMembership().process(FactResult(out))


def test_membership_reads_only_server_and_ca_lines():
    cmd = cluster.ClusterMembership().build()
    assert "grep -E '^[[:space:]]*(server|certificate-authority-data):'" in cmd
    assert "cat " not in cmd and "client-key" not in cmd  # admin.conf's client key stays on the host


def test_user_kubeconfig_compares_with_admin_conf():
    fact = cluster.UserKubeconfig("lab")
    assert fact.build() == "cmp -s /etc/kubernetes/admin.conf ~lab/.kube/config"
    assert [fact.process(FactResult("", "", rc)) for rc in (0, 1, 2)] == [True, False, False]


def test_non_json_nodes_output_is_an_error():
    with pytest.raises(OperationError, match="kubectl get nodes returned no JSON"):
        cluster.ClusterNodes().process(FactResult("The connection to the server was refused"))
