"""containerd's config.toml edited by key: the checks every config.toml case gets (imported by
test_host_operations and test_cluster_operations), and the real `containerd config default`
recordings (tests/data/facts/containerd/config-v*-default.json) they start from."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from labkit.facts.base import FactResult
from labkit.facts.containerd import CERTS_D, CONFIG_TOML, REGISTRY_TABLE, ContainerdConfig, lookup, parse_config_toml
from labkit.operations import cluster, containerd
from labkit.operations.base import PutFile

DATA = Path(__file__).resolve().parents[1] / "data"


def toml_key(dotted: str) -> tuple[str, ...]:
    """'plugins."io.containerd.cri.v1.images".registry.config_path' -> its keys (TOML's own quoting)."""
    node, path = tomllib.loads(f"{dotted} = 0"), []
    while isinstance(node, dict):
        (key, node), = node.items()
        path.append(key)
    return tuple(path)


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def check_config(before: str, after: str, keys: dict) -> None:
    """A written config.toml parses, holds ``keys`` (dotted TOML key -> value) and keeps every
    comment of ``before``."""
    data = tomllib.loads(after)
    assert keys, "a config.toml change names the keys it must hold"
    for dotted, value in keys.items():
        assert lookup(data, toml_key(dotted)) == value, dotted
    kept = comments(after)
    assert [c for c in comments(before) if c not in kept] == []


def recorded_config(name: str) -> dict:
    """A recorded ContainerdConfig fact ('containerd/config-v3-default'), parsed."""
    case = json.loads((DATA / "facts" / f"{name}.json").read_text())
    return ContainerdConfig().process(FactResult(case["stdout"], case.get("stderr", ""), case["exited"]))


# ---- the recordings -----------------------------------------------------------------------------

DEFAULTS = {2: "containerd/config-v2-default", 3: "containerd/config-v3-default"}


@pytest.mark.parametrize("version", sorted(DEFAULTS))
def test_recording_says_how_it_was_made(version):
    case = json.loads((DATA / "facts" / f"{DEFAULTS[version]}.json").read_text())
    assert "containerd config default" in case["comment"]
    config = recorded_config(DEFAULTS[version])
    assert config["valid"] and config["version"] == version


def test_containerd_2_quotes_table_names_with_single_quotes():
    raw = recorded_config(DEFAULTS[3])["raw"]
    assert "[plugins.'io.containerd.cri.v1.images'.registry]" in raw
    assert lookup(tomllib.loads(raw), REGISTRY_TABLE[3]) is not None


@pytest.mark.parametrize("version", sorted(DEFAULTS))
def test_absent_config_commands_give_systemd_cgroup_by_key(version):
    """containerd_for_kubelet writes `containerd config default` and seds it (no Python on the host):
    on the real output of both versions that sets runc's SystemdCgroup, and nothing else."""
    changes = list(cluster.containerd_for_kubelet(config=parse_config_toml(None)))
    old, new = re.search(r"sed -i 's/(.+)/(.+)/'", changes[1].command).groups()
    raw = recorded_config(DEFAULTS[version])["raw"]
    assert raw.count(old) == 1
    edited = tomllib.loads(raw.replace(old, new))
    assert lookup(edited, cluster.RUNC_TABLE[version] + ("options", "SystemdCgroup")) is True


# ---- registry.mirrors / configs.tls -> hosts.toml --------------------------------------------------


@pytest.mark.parametrize("registry, files", [
    ({"mirrors": {"docker.io": {"endpoint": ["mirror.example.com:5000", "https://registry-1.docker.io"]}}},
     {"docker.io": {"host": {"https://mirror.example.com:5000": {"capabilities": ["pull", "resolve"]},
                             "https://registry-1.docker.io": {"capabilities": ["pull", "resolve"]}}}}),
    ({"mirrors": {"*": {"endpoint": ["localhost:5000/cache"]}}},
     {"_default": {"host": {"http://localhost:5000/cache": {"capabilities": ["pull", "resolve"],
                                                            "override_path": True}}}}),
    ({"mirrors": {"quay.io": {"endpoint": ["https://m.example.com"]}},
      "configs": {"m.example.com": {"tls": {"ca_file": "/etc/ssl/m.pem", "cert_file": "/c.pem", "key_file": "/k.pem"},
                                    "auth": {"username": "u"}},
                  "r.example.com": {"tls": {"insecure_skip_verify": True}}}},
     {"quay.io": {"host": {"https://m.example.com": {"capabilities": ["pull", "resolve"], "ca": "/etc/ssl/m.pem",
                                                     "client": [["/c.pem", "/k.pem"]]}}},
      "m.example.com": {"ca": "/etc/ssl/m.pem", "client": [["/c.pem", "/k.pem"]]},
      "r.example.com": {"skip_verify": True}}),
    ({"mirrors": {}, "configs": {"gcr.io": {"auth": {"username": "u"}}}}, {}),
])
def test_legacy_registry_entries_as_hosts_toml(registry, files):
    assert containerd.legacy_hosts(registry) == files


# ---- one run makes it right --------------------------------------------------------------------

REGISTRY = "192.168.20.6:5000"


def _case_config(case: dict, here: Path) -> dict:
    if "toml" in case:
        return parse_config_toml((here / case["toml"]["config"]).read_text())
    if "recorded" in case:
        return recorded_config(case["recorded"]["config"])
    return case["kwargs"]["config"]


def _written(changes) -> str | None:
    return next((c.content for c in changes if isinstance(c, PutFile) and c.path == CONFIG_TOML), None)


CONFIG_CASES = [(p, json.loads(p.read_text())) for p in sorted((DATA / "operations" / "containerd").glob("*.json"))]
CONFIG_CASES += [(p, json.loads(p.read_text())) for p in sorted((DATA / "operations" / "cluster").glob("*.json"))
                 if json.loads(p.read_text())["function"] == "containerd_for_kubelet"]
CONFIG_CASES = [(p, case) for p, case in CONFIG_CASES
                if any(c.get("put") == CONFIG_TOML and "keys" in c for c in case.get("changes", []))]


@pytest.mark.parametrize("path, case", CONFIG_CASES, ids=[p.stem for p, _ in CONFIG_CASES])
def test_a_second_run_changes_nothing(path, case):
    config = _case_config(case, path.parent)
    if "operation" in case:
        kwargs = dict(case["kwargs"], config=config)
        new = _written(containerd.containerd_trust(**kwargs))
        again = containerd.containerd_trust(**dict(kwargs, config=parse_config_toml(new),
                                                   hosts=containerd.hosts_toml(kwargs["registry"])))
    else:
        new = _written(cluster.containerd_for_kubelet(config=config))
        again = cluster.containerd_for_kubelet(config=parse_config_toml(new))
    assert list(again) == []


@pytest.mark.parametrize("version", sorted(DEFAULTS))
def test_kubelet_and_registry_edits_keep_each_other(version):
    """setup-cluster's edit, then setup-registry's, on a real default: each keeps the other's keys."""
    major, hosts = version - 1, containerd.hosts_toml(REGISTRY)
    first = _written(cluster.containerd_for_kubelet(config=recorded_config(DEFAULTS[version])))
    both = _written(containerd.containerd_trust(registry=REGISTRY, config=parse_config_toml(first), major=major,
                                                hosts=hosts))
    data = tomllib.loads(both)
    assert lookup(data, cluster.RUNC_TABLE[version] + ("options", "SystemdCgroup")) is True
    assert lookup(data, REGISTRY_TABLE[version] + ("config_path",)) == CERTS_D
    assert list(cluster.containerd_for_kubelet(config=parse_config_toml(both))) == []
    assert list(containerd.containerd_trust(registry=REGISTRY, config=parse_config_toml(both), major=major,
                                            hosts=hosts)) == []
