"""labkit's host steps against the labtwin hosts, over real SSH (issue 3, "Tests against the twin").

The module starts from a fresh twin and leaves a fresh one behind (other twin tests expect an
unconfigured box). Host state is read with ``twin.ssh`` (nsenter, not labkit), so the checks
do not trust the code under test. labkit runs with a copy of the twin's inventory whose
known_hosts is this module's own file (pinning is tested from an empty file).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from labkit import flows
from labkit.errors import HostsFailed
from labkit.facts.docker import parse_systemctl_cat
from labkit.inventory import load

pytestmark = pytest.mark.twin

MANAGED = ("/etc/docker/daemon.json /etc/ganesha/ganesha.conf /etc/exports "
           "/etc/systemd/system/docker.service.d/*.conf /etc/sysconfig/docker "
           "/etc/containerd/config.toml /etc/containerd/certs.d/*/hosts.toml")
OTHER_EXPORT = ("EXPORT {\n\tExport_Id = 50;\n\tPath = /srv/other;\n\tPseudo = /srv/other;\n"
                "\tAccess_Type = RO;\n\tFSAL {\n\t\tName = VFS;\n\t}\n}\n")


@pytest.fixture(scope="module")
def lab(twin):
    """A fresh twin for this module, and fresh again afterwards."""
    twin.reset()
    yield twin
    twin.reset()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("host-steps")


def derived(twin, workdir: Path, name: str, **changes) -> Path:
    """A copy of the twin's inventory with top-level sections updated (e.g. nfs={...})."""
    data = yaml.safe_load(Path(twin.inventory_path).read_text())
    data["ssh"]["known_hosts"] = str(workdir / "known_hosts")
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def inv(lab, workdir):
    return load(derived(lab, workdir, "lab"))


def sh(twin, host: str, cmd: str, ok: bool = True) -> str:
    rc, out, err = twin.ssh(host, cmd)
    if ok:
        assert rc == 0, f"{host}: {cmd}: rc={rc} {err}"
    return out


def snapshot(twin) -> dict[str, str]:
    """What the host steps may change, per host, read without labkit."""
    cmd = (f"sha256sum {MANAGED} 2>/dev/null; "
           "for u in docker containerd rpcbind nfs-ganesha; do echo $u $(systemctl is-active $u) "
           "$(systemctl show -p ActiveEnterTimestampMonotonic --value $u); done; "
           "docker ps -aq --no-trunc | sort; ls -d /data/registry /nfsdata/* 2>/dev/null; "
           "docker images -q --no-trunc | sort")
    return {h: sh(twin, h, cmd, ok=False) for h in twin.hosts}


def pull(twin, host: str, ref: str) -> tuple[int, str]:
    rc, out, err = twin.ssh(host, f"docker pull {ref}", timeout=120)
    return rc, out + err


# ------------------------------------------------------------------ plan mode first (fresh twin)


def test_plan_mode_changes_nothing_on_a_fresh_twin(lab, inv):
    before = snapshot(lab)
    for flow in (flows.setup_registry, flows.setup_nfs):
        result = flow(inv, plan=True)
        assert set(result.report.changed_hosts) >= {"master"}
    # build-images needs the registry to plan; on a fresh twin it says so, changing nothing.
    with pytest.raises(HostsFailed) as exc:
        flows.build_images(inv, plan=True)
    assert "run setup-registry first" in str(exc.value)
    assert snapshot(lab) == before


def test_host_keys_are_pinned_on_first_use(lab, inv, workdir):
    text = (workdir / "known_hosts").read_text()
    for address in lab.hosts.values():
        assert any(line.startswith(address + " ") for line in text.splitlines()), address


# ------------------------------------------------------------------ setup-registry


def test_setup_registry_runs_the_registry_and_nodes_pull_only_after(lab, inv, workdir):
    reg = inv.registry_address
    # node02: an existing daemon.json with another key, and the --insecure-registry flag
    # in ExecStart (a drop-in), which together make a stock dockerd refuse to start.
    sh(lab, "node02", "python3 - <<'EOF'\nimport json\np='/etc/docker/daemon.json'\n"
                      "d=json.load(open(p)); d['log-level']='info'\njson.dump(d, open(p,'w'))\nEOF")
    unit = parse_systemctl_cat(sh(lab, "node02", "systemctl cat docker.service"))
    sh(lab, "node02", "mkdir -p /etc/systemd/system/docker.service.d && printf '%s\\n' '[Service]' 'ExecStart=' "
                      f"'ExecStart={unit['exec_start']} --insecure-registry {reg}' "
                      "> /etc/systemd/system/docker.service.d/10-flag.conf && systemctl daemon-reload && "
                      "systemctl restart docker && systemctl is-active docker")

    # First without node01 (an inventory needs a worker: node02 comes along): node01 stays
    # unconfigured and must fail to pull over plain HTTP.
    without_node01 = load(derived(lab, workdir, "without-node01",
                                  hosts=[h for h in yaml.safe_load(Path(lab.inventory_path).read_text())["hosts"]
                                         if h["name"] != "node01"]))
    flows.setup_registry(without_node01)
    sh(lab, "master", f"docker tag httpd:2.4 {reg}/probe:1 && docker push {reg}/probe:1")
    rc, out = pull(lab, "node01", f"{reg}/probe:1")
    assert rc != 0 and "http: server gave HTTP response to HTTPS client" in out

    result = flows.setup_registry(inv)
    assert all(row[2] == "ok" for row in result.checks) and len(result.checks) == 3

    info = sh(lab, "master", "docker inspect -f '{{.HostConfig.RestartPolicy.Name}} {{.Config.Image}} "
                             "{{range .Mounts}}{{.Source}}:{{.Destination}}{{end}} {{.State.Running}}' registry")
    assert info.split() == ["always", "registry:2", "/data/registry:/var/lib/registry", "true"]
    assert sh(lab, "master", "ls /data/registry/docker/registry/v2/repositories").split() == ["probe"]

    rc, out = pull(lab, "node01", f"{reg}/probe:1")
    assert rc == 0, out

    # node02: other keys kept, flag moved out of ExecStart, dockerd running and pulling.
    import json
    daemon = json.loads(sh(lab, "node02", "cat /etc/docker/daemon.json"))
    assert daemon["log-level"] == "info" and "cgroup-parent" in daemon and reg in daemon["insecure-registries"]
    assert sh(lab, "node02", "systemctl is-active docker").strip() == "active"
    assert "--insecure-registry" not in (parse_systemctl_cat(sh(lab, "node02", "systemctl cat docker.service"))
                                         ["exec_start"])
    rc, out = pull(lab, "node02", f"{reg}/probe:1")
    assert rc == 0, out


def test_setup_registry_again_changes_nothing(lab, inv):
    before = snapshot(lab)
    result = flows.setup_registry(inv)
    assert result.report.changed_hosts == []
    assert all(s == "no change" for o in result.report.hosts.values() for _, s, _ in o.applied)
    assert snapshot(lab) == before


def test_the_flag_in_a_late_override_and_in_docker_opts_is_repaired_and_docker_runs(lab, inv):
    # node02: the example, an override.conf that sorts after the drop-in an older labkit
    # wrote (labkit-insecure-registry.conf), and Debian's /etc/default/docker DOCKER_OPTS (its unit
    # runs dockerd ... $DOCKER_OPTS).
    reg = inv.registry_address
    unit = parse_systemctl_cat(sh(lab, "node02", "systemctl cat docker.service"))
    base = unit["exec_start"].replace(f" --insecure-registry {reg}", "")
    # (daemon.json without the key: dockerd refuses a flag beside it, so that is how such a host runs)
    sh(lab, "node02", "python3 -c \"import json; p = '/etc/docker/daemon.json'; d = json.load(open(p)); "
                      "d.pop('insecure-registries', None); json.dump(d, open(p, 'w'))\" && "
                      "cd /etc/systemd/system/docker.service.d && "
                      "mv zz-labkit-insecure-registry.conf labkit-insecure-registry.conf && "
                      "printf '%s\\n' '[Service]' 'ExecStart=' "
                      f"'ExecStart={base} --insecure-registry 10.1.2.3:5000' > override.conf && "
                      "printf 'DOCKER_OPTS=\"--insecure-registry 10.4.5.6:5000\"\\n' >> /etc/default/docker && "
                      "systemctl daemon-reload && systemctl restart docker && systemctl is-active docker")
    result = flows.setup_registry(inv)
    assert "node02" in result.report.changed_hosts
    assert sh(lab, "node02", "systemctl is-active docker").strip() == "active"
    effective = parse_systemctl_cat(sh(lab, "node02", "systemctl cat docker.service"))
    assert effective["exec_start_file"].endswith("/zz-labkit-insecure-registry.conf")
    assert "--insecure-registry" not in effective["exec_start"]
    assert "--insecure-registry" not in sh(lab, "node02", "grep DOCKER_OPTS= /etc/default/docker")
    import json
    daemon = json.loads(sh(lab, "node02", "cat /etc/docker/daemon.json"))
    assert {reg, "10.1.2.3:5000", "10.4.5.6:5000"} <= set(daemon["insecure-registries"])
    info = json.loads(sh(lab, "node02", "docker info --format '{{json .RegistryConfig.IndexConfigs}}'"))
    assert all(info[r]["Secure"] is False for r in (reg, "10.1.2.3:5000", "10.4.5.6:5000"))
    assert flows.setup_registry(inv).report.changed_hosts == []  # and a re-run changes nothing


def test_a_runtime_that_does_not_start_with_the_change_gets_its_old_files_back(lab, inv):
    # node01: the flag in a drop-in that sorts after labkit's own (zz-...), and no insecure-registries
    # in daemon.json: docker runs. labkit's repair cannot win over that drop-in, so dockerd refuses
    # the flag beside daemon.json's new key: labkit must put daemon.json back, remove its drop-in,
    # start docker again and say dockerd's own reason.
    reg = inv.registry_address
    exec_start = parse_systemctl_cat(sh(lab, "node01", "systemctl cat docker.service"))["exec_start"]
    late = "/etc/systemd/system/docker.service.d/zzz-late.conf"
    sh(lab, "node01", "python3 -c \"import json; p = '/etc/docker/daemon.json'; d = json.load(open(p)); "
                      "d.pop('insecure-registries', None); json.dump(d, open(p, 'w'))\" && "
                      f"mkdir -p {late.rsplit('/', 1)[0]} && "
                      f"printf '%s\\n' '[Service]' 'ExecStart=' 'ExecStart={exec_start} --insecure-registry {reg}' "
                      f"> {late} && systemctl daemon-reload && systemctl restart docker")
    looks = "cat /etc/docker/daemon.json; ls /etc/systemd/system/docker.service.d/; systemctl is-active docker"
    before = sh(lab, "node01", looks)
    assert before.strip().endswith("active")
    try:
        with pytest.raises(HostsFailed) as exc:
            flows.setup_registry(inv)
        msg = " ".join(str(exc.value).split())
        assert "node01" in msg and "docker did not start with labkit's change, so the previous files are back " \
               "(docker is active now)" in msg, msg
        assert "specified both as a flag and in the configuration file" in msg, msg
        assert sh(lab, "node01", looks) == before
    finally:
        sh(lab, "node01", f"rm -f {late} && systemctl daemon-reload && systemctl restart docker")
    flows.setup_registry(inv)  # without the late drop-in, the repair goes through
    assert sh(lab, "node01", "systemctl is-active docker").strip() == "active"


# ------------------------------------------------------------------ setup-nfs


def test_setup_nfs_kernel_fails_clearly_on_the_twin(lab, workdir):
    before = snapshot(lab)
    kernel = load(derived(lab, workdir, "kernel", nfs={"server": "kernel"}))
    with pytest.raises(HostsFailed) as exc:
        flows.setup_nfs(kernel)
    assert list(exc.value.failures) == ["master"]
    assert "no kernel NFS server" in exc.value.failures["master"]
    assert "nfs.server: ganesha" in exc.value.failures["master"]
    assert snapshot(lab) == before


def test_setup_nfs_ganesha_exports_and_keeps_other_exports(lab, inv):
    sh(lab, "master", f"mkdir -p /srv/other && printf '%s' '{OTHER_EXPORT}' >> /etc/ganesha/ganesha.conf")
    result = flows.setup_nfs(inv)
    assert [(r[0], r[2]) for r in result.checks] == [("node01", "ok"), ("node02", "ok")]
    master = lab.hosts["master"]
    for node in ("node01", "node02"):
        listed = sh(lab, node, f"showmount -e {master}")
        assert "/nfsdata" in listed and "/srv/other" in listed  # the other export survived
    assert OTHER_EXPORT in sh(lab, "master", "cat /etc/ganesha/ganesha.conf")
    sh(lab, "master", "echo 'hello over nfs' > /nfsdata/labkit-probe.txt")
    assert sh(lab, "node02", f"nfs-cat nfs://{master}/nfsdata/labkit-probe.txt") == "hello over nfs\n"
    assert sh(lab, "master", "systemctl is-enabled nfs-ganesha rpcbind").split() == ["enabled", "enabled"]


def test_setup_nfs_again_changes_nothing(lab, inv):
    before = snapshot(lab)
    result = flows.setup_nfs(inv)
    assert result.report.changed_hosts == []
    assert snapshot(lab) == before


# ------------------------------------------------------------------ build-images


def test_build_images_pushes_both_tags_and_nodes_pull_them(lab, inv):
    result = flows.build_images(inv)
    assert result.checks[0][2] == "ok"
    reg = inv.registry_address
    tags = sh(lab, "node01", f"curl -fsS http://{reg}/v2/{inv.images.web.repository}/tags/list")
    assert sorted(yaml.safe_load(tags)["tags"]) == ["v1", "v2"]
    for tag in ("v1", "v2"):
        rc, out = pull(lab, "node02", inv.image_ref(tag))
        assert rc == 0, out
        env = sh(lab, "node02", f"docker image inspect -f '{{{{json .Config.Env}}}}' {inv.image_ref(tag)}")
        assert f"WEB_VERSION={tag}" in env


def test_build_images_again_changes_nothing(lab, inv):
    before = snapshot(lab)
    result = flows.build_images(inv)
    assert result.report.changed_hosts == []
    assert snapshot(lab) == before


# ------------------------------------------------------------------ containerd runtime


def test_every_runtime_on_a_host_trusts_the_registry(lab, inv, workdir):
    # setup-registry above made docker and, beside it, the containerd each bare host has trust the
    # registry (labkit/runtimes.py); a host whose kubelet uses containerd is configured the same way.
    import tomllib

    reg = inv.registry_address
    for host in lab.hosts:
        config = tomllib.loads(sh(lab, host, "cat /etc/containerd/config.toml"))
        cri = config["plugins"]["io.containerd.grpc.v1.cri"]
        assert cri["registry"]["config_path"] == "/etc/containerd/certs.d", host
        assert cri["cni"]["bin_dir"] == "/usr/lib/cni"  # the rest of Debian's file kept
        assert f'[host."http://{reg}"]' in sh(lab, host, f"cat /etc/containerd/certs.d/{reg}/hosts.toml")
        assert sh(lab, host, "systemctl is-active containerd docker").split() == ["active", "active"], host

    hosts = yaml.safe_load(Path(lab.inventory_path).read_text())["hosts"]
    for h in hosts:
        if h["name"] == "node02":
            h["runtime"] = "containerd"
    cinv = load(derived(lab, workdir, "containerd", hosts=hosts))
    ref = cinv.image_ref("v1")
    # containerd's own pull through certs.d: without labkit's hosts.toml it speaks HTTPS and fails
    sh(lab, "node02", f"mv /etc/containerd/certs.d/{reg}/hosts.toml /root/hosts.toml.saved")
    pull = f"ctr -n labkit-test images pull --hosts-dir /etc/containerd/certs.d {ref}"
    rc, out, err = lab.ssh("node02", pull, timeout=120)
    assert rc != 0 and "server gave HTTP response to HTTPS client" in out + err

    result = flows.setup_registry(cinv)
    changed = [p.operation for p in result.report.hosts["node02"].plans if not p.no_change]
    assert changed == ["containerd trusts registry"]
    sh(lab, "node02", pull)  # plain HTTP now comes from hosts.toml, no --plain-http flag

    before = snapshot(lab)
    assert flows.setup_registry(cinv).report.changed_hosts == []
    assert snapshot(lab) == before


# ------------------------------------------------------------------ doctor


def test_doctor_on_bare_hosts(lab, inv):
    # Bare hosts have no cluster: only master's kubectl checks fail, and they say why (the
    # all-green doctor runs on a real cluster in tests/e2e/test_seed_flow.py).
    with pytest.raises(HostsFailed) as exc:
        flows.doctor(inv)
    assert list(exc.value.failures) == ["master"]
    assert "kubectl" in exc.value.failures["master"]


def _doctor_rows(inv):
    from labkit import ui

    rows = []
    real_table = ui.table
    ui.table = lambda title, cols, r, status_column=None: rows.extend(r)
    try:
        with pytest.raises(HostsFailed) as exc:
            flows.doctor(inv)
    finally:
        ui.table = real_table
    return exc.value, rows


def test_doctor_names_node02_with_sshd_stopped_and_reports_the_others(lab, inv):
    sh(lab, "node02", "systemctl stop ssh.service ssh.socket 2>/dev/null; systemctl stop ssh; true")
    try:
        start = time.monotonic()
        err, rows = _doctor_rows(inv)
        assert time.monotonic() - start < 30
        assert "node02" in err.failures and "cannot connect" in err.failures["node02"]
        assert {r[0] for r in rows} == {"master", "node01", "node02"}
        assert all(r[2] == "ok" for r in rows if r[0] == "node01")
    finally:
        sh(lab, "node02", "systemctl start ssh")


def test_doctor_names_the_registry_when_its_container_is_stopped(lab, inv):
    sh(lab, "master", "docker stop registry")
    try:
        err, rows = _doctor_rows(inv)
        assert "registry" in err.failures["master"]
        bad = {(r[0], r[1]) for r in rows if r[2] == "failed"}
        assert ("master", f"registry container {inv.registry.container}") in bad
        assert ("node01", f"registry {inv.registry_address} reachable") in bad
    finally:
        sh(lab, "master", "docker start registry")


# ------------------------------------------------------------------ a non-root user with sudo


def test_non_root_user_with_sudo_password(lab, workdir, monkeypatch, capsys):
    from labkit import remote

    password = "Lab-pw 42"
    for host in lab.hosts:
        sh(lab, host, "id lab >/dev/null 2>&1 || useradd -m -s /bin/sh lab; "
                      f"echo 'lab:{password}' | chpasswd; mkdir -p ~lab/.ssh; "
                      "cp /root/.ssh/authorized_keys ~lab/.ssh/; chown -R lab: ~lab/.ssh; "
                      "echo 'lab ALL=(ALL) ALL' > /etc/sudoers.d/lab; chmod 440 /etc/sudoers.d/lab")
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    inv = load(derived(lab, workdir, "lab-user", ssh={**data["ssh"], "user": "lab", "sudo": True}))
    monkeypatch.setattr(remote, "_sudo_password", None)
    monkeypatch.setenv(remote.SUDO_PASSWORD_ENV, password)
    before = snapshot(lab)
    result = flows.setup_registry(inv)  # root-owned facts read through sudo; all already right
    assert result.report.changed_hosts == [] and all(r[2] == "ok" for r in result.checks)
    assert snapshot(lab) == before
    assert password not in capsys.readouterr().out

    monkeypatch.setattr(remote, "_sudo_password", None)
    monkeypatch.setenv(remote.SUDO_PASSWORD_ENV, "wrong")
    with pytest.raises(HostsFailed) as exc:
        flows.setup_registry(inv, plan=True)
    assert set(exc.value.failures) == {"master", "node01", "node02"}
    assert all("sudo refused the password for lab" in m for m in exc.value.failures.values())
    monkeypatch.setattr(remote, "_sudo_password", None)


# ------------------------------------------------------------------ host keys, unreachable host


def test_changed_host_key_is_refused(lab, inv, workdir):
    sh(lab, "node01", "rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key "
                      "&& systemctl restart ssh")
    with pytest.raises(HostsFailed) as exc:
        flows.setup_registry(inv, plan=True)
    assert list(exc.value.failures) == ["node01"]
    msg = exc.value.failures["node01"]
    assert "host key of" in msg and "changed" in msg and str(workdir / "known_hosts") in msg and "line " in msg


def test_unreachable_host_is_a_clean_error_within_the_timeout(lab, workdir):
    hosts = yaml.safe_load(Path(lab.inventory_path).read_text())["hosts"]
    # .9 on the twin's bridge: an address nothing answers on.
    ghost = str(lab.cfg.subnet.network_address + 9)
    for h in hosts:
        if h["name"] == "node02":
            h["address"] = ghost
    inv = load(derived(lab, workdir, "ghost", hosts=hosts, ssh={"connect_timeout": 2}))
    start = time.monotonic()
    with pytest.raises(HostsFailed) as exc:
        flows.doctor(inv)
    assert time.monotonic() - start < 10
    msg = exc.value.failures["node02"]
    assert ghost in msg and ("no answer" in msg or "cannot connect" in msg)
