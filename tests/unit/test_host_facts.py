"""Host fact parsers on recorded outputs (tests/data/facts/<concept>/*.json), pyinfra-style:
each file holds the fact, its arguments, the command's stdout/stderr/exit code and the
expected parsed value. Plus the exact commands the facts send."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.facts import containerd, content, docker, nfs, os as os_facts, registry, services
from labkit.errors import OperationError
from labkit.facts.base import FactResult
from factdata import plain

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"
CONCEPTS = ("os", "services", "docker", "containerd", "registry", "nfs", "content")
MODULES = (containerd, content, docker, nfs, os_facts, registry, services)
FACTS = {name: obj for m in MODULES for name, obj in vars(m).items() if isinstance(obj, type)}
CASES = sorted(p for c in CONCEPTS for p in (DATA / c).glob("*.json"))


def test_every_concept_has_recorded_outputs():
    for c in CONCEPTS:
        assert list((DATA / c).glob("*.json")), c


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_fact_parses_recorded_output(path):
    case = json.loads(path.read_text())
    args = [tuple(a) if isinstance(a, list) else a for a in case["args"]]
    fact = FACTS[case["fact"]](*args)
    assert case["exited"] in fact.ok_exit_codes, "a recorded exit code the fact would reject"
    result = FactResult(case["stdout"], case.get("stderr", ""), case["exited"])
    if "raises" in case:  # a fact that refuses what it read: the message says what to do
        with pytest.raises(OperationError) as err:
            fact.process(result)
        assert str(err.value) == case["raises"]
        return
    assert plain(got := fact.process(result)) == case["expected"], got


def test_recorded_fact_commands_are_the_facts_own():
    for path in CASES:
        case = json.loads(path.read_text())
        if "command" in case:
            args = [tuple(a) if isinstance(a, list) else a for a in case["args"]]
            assert FACTS[case["fact"]](*args).build() == case["command"], path.name


def test_os_release_covers_the_four_distributions():
    ids = {json.loads(p.read_text())["expected"]["id"] for p in (DATA / "os").glob("*.json")
           if json.loads(p.read_text())["fact"] == "OsRelease"}
    assert {"centos", "rocky", "debian", "ubuntu"} <= ids


@pytest.mark.parametrize("fact, command", [
    (os_facts.FileContent("/etc/my file"), "[ -e '/etc/my file' ] || exit 3; cat '/etc/my file'"),
    (os_facts.DirExists("/data/registry"), "test -d /data/registry"),
    (docker.DaemonJson(), "[ -e /etc/docker/daemon.json ] || exit 3; cat /etc/docker/daemon.json"),
    (docker.DockerInfo(), "docker info --format '{{json .}}'"),
    (docker.DockerUnit(), "systemctl cat docker.service 2>/dev/null"),
    (registry.RegistryContainer("registry"), "docker inspect --type container registry 2>/dev/null"),
    (registry.RegistryPing("192.168.20.6:5000"), "curl -fsS -m 10 http://192.168.20.6:5000/v2/ 2>&1"),
    (registry.RegistryTags("192.168.20.6:5000", "web-httpd"),
     "curl -fsS -m 10 http://192.168.20.6:5000/v2/web-httpd/tags/list 2>/dev/null"),
    (nfs.Showmount("192.168.20.6"), "showmount -e 192.168.20.6 2>&1"),
    (services.ServiceState("nfs-ganesha"),
     "printf 'active=%s\\n' \"$(systemctl is-active nfs-ganesha 2>/dev/null)\"; "
     "printf 'enabled=%s\\n' \"$(systemctl is-enabled nfs-ganesha 2>/dev/null)\""),
    (os_facts.InstalledPackages(("nfs-common",)),
     "if dpkg-query -W -f='${Status}' nfs-common 2>/dev/null | grep -q 'ok installed' "
     "|| rpm -q nfs-common >/dev/null 2>&1; then echo nfs-common yes; else echo nfs-common no; fi"),
])
def test_fact_commands_are_exact(fact, command):
    assert fact.build() == command


@pytest.mark.parametrize("make", [
    lambda: registry.RegistryPing("host;rm -rf /:5000"),
    lambda: registry.RegistryTags("h:5000", "Web$(id)"),
    lambda: registry.RegistryImageConfig("h:5000", "web", "v1;reboot"),
    lambda: nfs.Showmount("a b"),
    lambda: services.ServiceState("docker; reboot"),
    lambda: os_facts.InstalledPackages(("nfs-common", "x`id`")).build(),
])
def test_hostile_values_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_image_config_fetches_manifest_then_config_blob():
    cmd = registry.RegistryImageConfig("192.168.20.6:5000", "web-httpd", "v2").build()
    assert "http://192.168.20.6:5000/v2/web-httpd/manifests/v2" in cmd
    assert cmd.endswith("curl -fsS -m 10 http://192.168.20.6:5000/v2/web-httpd/blobs/\"$d\"")
