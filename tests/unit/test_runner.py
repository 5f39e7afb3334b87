"""labkit.runner: facts read in one batch, plan, plan mode changes nothing, apply, per-host results."""
from __future__ import annotations

import subprocess

import pytest

from labkit import runner
from labkit.errors import HostError, HostsFailed, OperationError
from labkit.facts.base import Fact, FactResult
from labkit.facts.os import DirExists, FileContent
from labkit.operations.base import Command, PutFile
from labkit.remote import RunResult


class LocalHost:
    """A HostConnection stand-in that runs commands in the local sh (no SSH)."""

    def __init__(self, name, fail_on=None):
        self.name = name
        self.sent: list[str] = []
        self.puts: list[tuple[str, str]] = []
        self.fail_on = fail_on

    def run(self, command, *, sudo=False, ok_exit_codes=(0,), timeout=None, check=True):
        self.sent.append(command)
        if self.fail_on and self.fail_on in command:
            raise HostError(self.name, f"command exited 1: {command}: boom")
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        r = RunResult(self.name, command, p.stdout, p.stderr, p.returncode)
        if check and r.exited not in ok_exit_codes:
            raise HostError(self.name, f"command exited {r.exited}")
        return r

    def put_text(self, path, content, *, mode=0o644, backup_suffix=".labkit.bak"):
        self.puts.append((path, content))


class Echo(Fact):
    def __init__(self, text, code=0, ok=(0,)):
        self.text, self.code, self.ok_exit_codes = text, code, ok

    def build(self):
        return f"printf %s '{self.text}'; echo oops >&2; exit {self.code}"

    def process(self, result: FactResult):
        return (result.stdout, result.stderr.strip(), result.exited)


def test_batch_reads_every_fact_in_one_command_with_exact_output(tmp_path):
    (tmp_path / "f").write_text("line1\n\nline3")  # no trailing newline, blank line kept
    h = LocalHost("master")
    got = runner.gather(h, {"file": FileContent(str(tmp_path / "f")), "missing": FileContent(str(tmp_path / "nope")),
                            "dir": DirExists(str(tmp_path)), "echo": Echo("a b", code=4, ok=(4,))})
    assert got == {"file": "line1\n\nline3", "missing": None, "dir": True, "echo": ("a b", "oops", 4)}
    assert len(h.sent) == 1


class Root(Echo):
    sudo = True


@pytest.mark.parametrize("use_sudo, batches", [(False, [True]), (True, [True, False])])
def test_root_facts_and_user_facts_run_apart_under_sudo(use_sudo, batches):
    # as root one command; as a sudo user, kubectl-like facts must not run as root (root's kubeconfig)
    h = LocalHost("master")
    h.use_sudo, modes = use_sudo, []
    run = h.run
    h.run = lambda command, sudo=False, **kw: (modes.append(sudo), run(command, sudo=sudo, **kw))[1]
    got = runner.gather(h, {"user": Echo("kubectl"), "root": Root("admin.conf"), "user2": Echo("x")})
    assert list(got) == ["user", "root", "user2"] and got["root"][0] == "admin.conf"
    assert modes == batches


def test_a_fact_exiting_badly_names_the_fact_or_is_tolerated():
    h = LocalHost("node01")
    with pytest.raises(HostError) as exc:
        runner.gather(h, {"x": Echo("", code=2)})
    assert str(exc.value) == "node01: reading Echo failed (exit 2): oops"
    got = runner.gather(h, {"x": Echo("", code=2), "y": Echo("fine")}, tolerant=True)
    assert isinstance(got["x"], runner.FactError) and not got["x"] and got["y"][0] == "fine"


def test_parse_batch_rejects_garbage():
    with pytest.raises(ValueError):
        runner.parse_batch("no markers", 1, "tok")


def make_steps(path_exists: bool):
    def plan(f):
        if not f["exists"]:
            yield Command("mkdir -p /srv/x", description="create /srv/x")
            yield PutFile("/srv/x/conf", "a=1\n", description="conf")

    return [runner.Step("thing", {"exists": Echo("yes" if path_exists else "")}, lambda f: plan({"exists": f["exists"][0]}))]


def test_plan_mode_sends_only_fact_reads_and_changes_nothing():
    hosts = {"master": LocalHost("master"), "node01": LocalHost("node01")}
    report = runner.run(hosts, {"master": make_steps(False), "node01": make_steps(True)}, title="t", plan_only=True)
    assert [len(h.sent) for h in hosts.values()] == [1, 1]  # the one fact batch each
    assert all(h.puts == [] for h in hosts.values())
    assert report.changed_hosts == ["master"]
    assert [type(c).__name__ for c in report.hosts["master"].plans[0].changes] == ["Command", "PutFile"]
    assert report.hosts["node01"].plans[0].no_change


def test_apply_runs_changes_in_order_and_reports_no_change():
    hosts = {"master": LocalHost("master"), "node01": LocalHost("node01")}
    report = runner.run(hosts, {"master": make_steps(False), "node01": make_steps(True)}, title="t")
    assert hosts["master"].sent[1:] == ["mkdir -p /srv/x"] and hosts["master"].puts == [("/srv/x/conf", "a=1\n")]
    assert len(hosts["node01"].sent) == 1
    assert report.hosts["master"].applied == [("thing", "changed", "2 change(s)")]
    assert report.hosts["node01"].applied == [("thing", "no change", "")]
    assert report.failures == {}


def test_failing_host_is_named_and_others_still_applied():
    hosts = {"master": LocalHost("master", fail_on="mkdir"), "node01": LocalHost("node01"), "node02": LocalHost("node02")}
    steps = {n: make_steps(False) for n in hosts}
    report = runner.run(hosts, steps, title="setup-x")
    assert report.failures == {"master": "thing: create /srv/x: command exited 1: mkdir -p /srv/x: boom"}
    assert hosts["node01"].puts and hosts["node02"].puts
    with pytest.raises(HostsFailed) as exc:
        report.raise_for_failures()
    assert "setup-x failed on master" in str(exc.value)


def test_operation_error_fails_only_that_host_at_plan_time():
    def bad(f):
        raise OperationError("no nfsd here: set nfs.server: ganesha")
        yield  # pragma: no cover

    hosts = {"master": LocalHost("master"), "node01": LocalHost("node01")}
    report = runner.run(hosts, {"master": [runner.Step("nfs", {}, bad)], "node01": make_steps(False)}, title="t")
    assert report.failures == {"master": "nfs: no nfsd here: set nfs.server: ganesha"}
    assert hosts["node01"].puts == [("/srv/x/conf", "a=1\n")]


def test_hosts_without_steps_are_not_contacted():
    hosts = {"master": LocalHost("master"), "node01": LocalHost("node01")}
    runner.run(hosts, {"master": make_steps(True), "node01": []}, title="t")
    assert hosts["node01"].sent == []


def test_non_tty_output_is_one_plain_line_per_host_step(capsys):
    hosts = {"master": LocalHost("master"), "node01": LocalHost("node01")}
    runner.run(hosts, {"master": make_steps(False), "node01": make_steps(True)}, title="t")
    out = capsys.readouterr().out
    assert "master  plan: would change - 2 change(s)" in out
    assert "node01  plan: no change" in out
    assert "master  apply: changed" in out
    assert "  node01  thing  no change" in out


# ---- the host flows' per-host composition and doctor's judgements (pure parts of labkit.flows)

from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from labkit import flows  # noqa: E402
from labkit.facts.kube import KubectlVersion, Node  # noqa: E402
from labkit.inventory import load  # noqa: E402

SEED = load(Path(__file__).resolve().parents[2] / "hosts.yaml")


def _recorded_fact(concept: str, name: str):
    """A fact's value from its recording in tests/data/facts/<concept>/<name>.json."""
    import json
    from labkit.facts import containerd, docker
    from labkit.facts.base import FactResult

    case = json.loads((Path(__file__).resolve().parents[1] / "data" / "facts" / concept / f"{name}.json").read_text())
    fact = getattr({"docker": docker, "containerd": containerd}[concept], case["fact"])(*case["args"])
    return fact.process(FactResult(case["stdout"], case.get("stderr", ""), case["exited"]))


DOCKER_ONLY = {"unit": ("docker", "twin-unit-debian"), "daemon_json": ("docker", "daemon-json-absent"),
               "sysconfig": ("docker", "sysconfig-absent"), "major": ("containerd", "version-absent"),
               "config": ("containerd", "config-absent")}
BOTH = {**DOCKER_ONLY, "major": ("containerd", "version-2.0")}
CONTAINERD_ONLY = {**BOTH, "unit": ("docker", "unit-absent")}


def _plans(steps, recorded: dict) -> dict[str, list]:
    """Each runtime step's planned changes on a host whose facts are ``recorded``."""
    facts = {k: _recorded_fact(*v) for k, v in recorded.items()}
    facts.setdefault("default", {"exists": False, "path": "/etc/default/docker", "raw": None, "options_line": None,
                                 "args": [], "insecure_registries": []})
    facts.setdefault("hosts", None)
    return {s.name: list(s.plan(facts)) for s in steps if "trusts" in s.name}


def test_every_runtime_a_host_has_trusts_the_registry():
    steps = flows.registry_steps(SEED)
    assert [s.name for s in steps["master"]] == ["registry container", "docker trusts registry",
                                                 "containerd trusts registry"]
    # a seed node (runtime: docker) with containerd too: both trust the registry
    plans = _plans(steps["node01"], BOTH)
    assert plans["docker trusts registry"] and plans["containerd trusts registry"]
    # docker only: the containerd step changes nothing
    plans = _plans(steps["node01"], DOCKER_ONLY)
    assert plans["docker trusts registry"] and plans["containerd trusts registry"] == []


def test_the_kubelets_runtime_and_the_pushers_docker_must_be_installed():
    from labkit.inventory import parse

    text = Path(SEED.path).read_text().replace("roles: [worker]\n    runtime: docker",
                                               "roles: [worker]\n    runtime: containerd", 1)
    steps = flows.registry_steps(parse(text, "mixed.yaml"))
    plans = _plans(steps["node01"], CONTAINERD_ONLY)  # runtime: containerd, no docker: fine
    assert plans["docker trusts registry"] == [] and plans["containerd trusts registry"]
    with pytest.raises(OperationError, match=r"containerd is not installed on node01, but hosts\[node01\].runtime "
                                             "says the kubelet uses it"):
        _plans(steps["node01"], DOCKER_ONLY)
    with pytest.raises(OperationError, match="docker is not installed on master, but .*the registry host pushes the images with it"):
        _plans(flows.registry_steps(SEED)["master"], CONTAINERD_ONLY)


def test_nfs_steps_server_and_clients():
    steps = flows.nfs_steps(SEED)
    assert [s.name for s in steps["master"]] == ["NFS server (kernel)"]
    assert [s.name for s in steps["node01"]] == ["NFS client"] == [s.name for s in steps["node02"]]


def doctor_host(name):
    return next(h for h in SEED.hosts if h.name == name)


CONN = SimpleNamespace(settings=SimpleNamespace(user="root"), use_sudo=False)


GOOD = {"os": {"name": "Debian GNU/Linux 12 (bookworm)", "family": "debian"},
        "runtime": {"active": "active", "enabled": "enabled"},
        "docker": {"running": True, "server_version": "20.10.24"},
        "registry": {"ok": True, "error": ""}}


def test_doctor_green_master():
    f = dict(GOOD, container={"running": True, "image": "registry:2", "status": "running"},
             kubectl=KubectlVersion("v1.37.1", "v1.30.0"), nodes=[Node("master", True, None), Node("node01", True, None)])
    rows = flows.doctor_rows(SEED, doctor_host("master"), f, CONN)
    assert all(r[2] == "ok" for r in rows), rows
    assert [r[1] for r in rows] == ["SSH + sudo", "OS family", "docker running", "registry container registry",
                                    "registry 192.168.20.6:5000 reachable", "kubectl", "nodes Ready"]


def test_doctor_failures_name_the_fix():
    f = dict(GOOD, runtime={"active": "inactive", "enabled": "enabled"},
             registry={"ok": False, "error": "curl: (7) Failed to connect"},
             packages={"nfs-common": False, "nfs-utils": False},
             showmount={"ok": True, "exports": [{"path": "/srv/other", "clients": ["*"]}], "error": ""})
    rows = {r[1]: (r[2], r[3]) for r in flows.doctor_rows(SEED, doctor_host("node01"), f, CONN)}
    assert rows["docker running"] == ("failed", "docker is inactive: run `systemctl enable --now docker` on node01")
    assert rows["registry 192.168.20.6:5000 reachable"][0] == "failed"
    assert "invoke setup-registry" in rows["registry 192.168.20.6:5000 reachable"][1]
    assert rows["NFS client"] == ("failed", "install nfs-common (Debian) / nfs-utils (RHEL): `invoke setup-nfs`")
    assert rows["export /nfsdata visible"] == ("failed", "192.168.20.6 exports /srv/other: run `invoke setup-nfs`")


def test_doctor_kubectl_and_nodes():
    f = dict(GOOD, container=None, kubectl=runner.FactError("KubectlVersionFact", "x"),
             nodes=[Node("master", True, None), Node("node02", False, None)])
    rows = {r[1]: (r[2], r[3]) for r in flows.doctor_rows(SEED, doctor_host("master"), f, CONN)}
    assert rows["registry container registry"] == ("failed", "no container registry on master: run `invoke setup-registry`")
    assert rows["kubectl"][0] == "failed"
    assert rows["nodes Ready"] == ("failed", "not Ready: node02 (check kubelet: journalctl -u kubelet)")


@pytest.mark.parametrize("kubectl, ok", [("v1.37.1", True), ("v1.36.9", True), ("v1.38.0", True),
                                          ("v1.35.0", False), ("v2.37.2", False), (None, False)])
def test_doctor_allows_kubectl_within_one_minor_of_the_cluster(kubectl, ok):
    from labkit.facts.cluster import Kubeconfig, Membership, Versions

    from labkit.inventory import parse

    text = (Path(__file__).resolve().parents[2] / "hosts.yaml").read_text()
    inv = parse(text.replace("kubernetes:\n", "kubernetes:\n  cluster: {create: true}\n", 1), "hosts.yaml")
    f = {"versions": Versions("v1.37.2", "v1.37.2", kubectl, "2.2.9"),
         "membership": Membership(Kubeconfig("https://192.168.20.6:6443", None), None), "kubeadm": []}
    rows = {r[1]: r[2] for r in flows._cluster_rows(inv, doctor_host("master"), f)}
    assert rows["kubernetes tools"] == ("ok" if ok else "failed") and rows["control plane"] == "ok"


def test_a_wait_is_planned_and_shown_but_left_to_the_flow():
    from labkit.operations.base import Wait

    wait = Wait("statefulset", "web", "default", 10)
    hosts = {"master": LocalHost("master"), "node01": LocalHost("node01")}
    steps = {"master": [runner.Step("scale", {}, lambda f: [Command("true", description="patch"), wait])],
             "node01": [runner.Step("scale", {}, lambda f: [wait])]}  # only a wait: nothing to change
    report = runner.run(hosts, steps, title="t")
    assert report.changed_hosts == ["master"] and report.hosts["node01"].plans[0].no_change
    assert report.hosts["master"].applied == [("scale", "changed", "1 change(s)")]
    assert hosts["master"].sent == ["true"] and hosts["node01"].sent == []  # no facts to read; waits are not sent
    assert report.waits("master") == report.waits("node01") == [wait]
    assert runner.describe(wait) == "wait for statefulset/web -n default to roll out with exactly 10 Ready pod(s)"
