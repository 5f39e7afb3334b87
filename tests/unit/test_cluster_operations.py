"""setup-cluster planners as data (tests/data/operations/cluster/*.json): facts in -> exact changes out.

A case names a function of labkit.operations.cluster and its keyword arguments, given as plain
JSON (``kwargs``), as recorded facts run through their parser (``recorded``: a file under
tests/data/facts/; containerd's config.toml recordings too), as a real containerd config.toml
(``toml``: a file beside the case) or as a text file under tests/data/ (``text``). It expects
``changes`` (a generator's Command/PutFile items), ``returns`` (a function's value; ``yaml``/``json``
for rendered files, compared as data) or ``error`` (a fragment of the OperationError). A PutFile
of a containerd config is compared as the ``diff`` it makes to the case's input file, checked by
key (``keys``) and for the comments it keeps.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
from pathlib import Path

import pytest
import yaml

from labkit import inventory
from labkit.errors import OperationError
from labkit.facts import cluster as facts
from labkit.facts import containerd as containerd_facts
from labkit.facts.base import FactResult
from labkit.facts.containerd import parse_config_toml
from labkit.operations import cluster
from labkit.operations.base import Command, PutFile
from test_containerd_config import check_config

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = sorted((DATA / "operations" / "cluster").glob("*.json"))


def recorded(spec: str | dict):
    """A recorded fact's parsed value: 'cluster/routes-twin-node01' (its own fact) or
    {"file": 'kube/nodes', "fact": 'ClusterNodes'} (another parser on the same output)."""
    spec = {"file": spec} if isinstance(spec, str) else spec
    case = json.loads((DATA / "facts" / f"{spec['file']}.json").read_text())
    name = spec.get("fact", case["fact"])
    fact = (getattr(facts, name, None) or getattr(containerd_facts, name))(*case.get("args") or [])
    stdout = case["stdout"] if isinstance(case["stdout"], str) else json.dumps(case["stdout"], indent=4)
    return fact.process(FactResult(stdout, case.get("stderr", ""), case["exited"]))


def _membership(d: dict) -> facts.Membership:
    return facts.Membership(*(facts.Kubeconfig(**d[k]) if d[k] else None for k in ("admin", "kubelet")))


# Plain JSON -> the types the planners take, by argument name.
FROM_JSON = {
    "cluster": inventory.Cluster.model_validate,  # only what differs from the inventory's defaults
    "versions": lambda d: facts.Versions(**d),
    "membership": _membership,
    "nodes": lambda items: [facts.ClusterNode(**n) for n in items],
    "routes": lambda items: [facts.Route(**r) for r in items],
    "join": lambda d: cluster.JoinCommand(**d),
}


def kwargs_of(case: dict) -> dict:
    kwargs = {k: FROM_JSON.get(k, lambda v: v)(v) for k, v in case.get("kwargs", {}).items()}
    kwargs.update({k: recorded(spec) for k, spec in case.get("recorded", {}).items()})
    here = DATA / "operations" / "cluster"
    kwargs.update({k: parse_config_toml((here / name).read_text()) for k, name in case.get("toml", {}).items()})
    kwargs.update({k: (DATA / name).read_text() for k, name in case.get("text", {}).items()})
    return kwargs


def before_of(case: dict, kwargs: dict) -> str | None:
    """The config.toml a case starts from (what a ``diff`` is taken against)."""
    return next((v["raw"] for v in kwargs.values() if isinstance(v, dict) and "raw" in v), None)


def plain(value):
    if dataclasses.is_dataclass(value):
        return plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def diff(before: str, after: str) -> list[str]:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in lines if not line.startswith(("---", "+++", "@@"))]


def as_data(change, expected: dict, before: str | None):
    """A change in the form its expected item uses."""
    if isinstance(change, Command):
        return {"command": change.command}
    assert isinstance(change, PutFile)
    out = {"put": change.path}
    if change.mode != 0o644:
        out["mode"] = oct(change.mode)
    if "diff" in expected:
        check_config(before, change.content, expected.get("keys", {}))
        out.update(diff=diff(before, change.content), keys=expected.get("keys"))
    elif "yaml" in expected:
        out["yaml"] = list(yaml.safe_load_all(change.content))
    elif "json" in expected:
        out["json"] = json.loads(change.content)
    else:
        out["content"] = change.content
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_planner(path):
    case = json.loads(path.read_text())
    function = getattr(cluster, case["function"])
    kwargs = kwargs_of(case)
    if "error" in case:
        with pytest.raises(OperationError) as exc:
            result = function(**kwargs)
            if inspect.isgenerator(result):
                list(result)
        assert case["error"] in str(exc.value)
        return
    result = function(**kwargs)
    if "changes" in case:
        before = before_of(case, kwargs)
        changes = list(result)
        wanted = case["changes"]
        assert [as_data(c, w, before) for c, w in zip(changes, wanted)] == wanted[:len(changes)]
        assert len(changes) == len(wanted), [as_data(c, {}, before) for c in changes]
    elif "yaml" in case:
        assert list(yaml.safe_load_all(result)) == case["yaml"]
    elif "json" in case:
        assert json.loads(result) == case["json"]
    else:
        assert plain(result) == case["returns"]


def test_every_already_right_case_is_empty():
    right = [p for p in CASES if "already-right" in p.stem]
    assert len(right) >= 6
    for p in right:
        assert json.loads(p.read_text())["changes"] == [], p.stem


def test_rendered_files_parse_as_what_they_claim():
    """The kubeadm documents are YAML of the right kinds; the conflist is JSON for the bridge plugin."""
    docs = list(yaml.safe_load_all(cluster.init_config(name="master", address="192.168.20.6",
                                                       cluster=inventory.Cluster())))
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                                         "KubeProxyConfiguration"]
    assert json.loads(cluster.cni_conflist("10.244.3.0/24"))["plugins"][0]["ipam"]["ranges"] == \
        [[{"subnet": "10.244.3.0/24"}]]


def test_hostile_values_are_quoted_or_refused():
    node = facts.ClusterNode("evil", "10.0.0.9", "10.244.9.0/24;reboot", True, None)
    with pytest.raises(ValueError):
        list(cluster.host_gw_routes(node="other", nodes=[node], routes=[]))
    with pytest.raises(ValueError):
        facts.user_kubeconfig("root;reboot")
    with pytest.raises(ValueError):
        facts.UserKubeconfig("$(id)").build()
    assert facts.ClusterMembership("/etc/my kube").build().startswith("d='/etc/my kube'; ")
    cmd = next(cluster.forward_pod_traffic(pod_subnet="10.244.0.0/16", rules=[]))
    assert cmd.command == "iptables -w -A FORWARD -s 10.244.0.0/16 -j ACCEPT"


def test_token_create_reads_admin_conf():
    assert cluster.TOKEN_CREATE.command == \
        "kubeadm token create --kubeconfig /etc/kubernetes/admin.conf --ttl 30m --print-join-command"
    assert cluster.TOKEN_CREATE.sudo


def test_join_phases_are_those_kubeadm_join_lists():
    # Every phase init and join share may be skipped for both; the rest only where it exists.
    shared = [p for p in inventory.KUBEADM_INIT_PHASES if p in cluster.KUBEADM_JOIN_PHASES]
    assert shared == ["preflight", "kubelet-start", "wait-control-plane"]
