"""NFS in pods, for real (issue 8): the kubelet's in-tree nfs volume plugin runs
`mount -t nfs master:/nfsdata DIR`, util-linux runs the hosts' /sbin/mount.nfs, which is
labtwin.nfsfuse (an NFSv3 client over FUSE, talking to the nfs-ganesha that labkit's setup-nfs
configures on master). In file order: the helper is in place, a pod serves master's files
through the NFS mount and writes back through it, a kubelet restart keeps the mount, a stopped
ganesha shows in the FailedMount event, deleting the pod leaves no FUSE daemon or mount, and the
twin's teardown leaves nothing on the machine.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

HTDOCS = "/usr/local/apache2/htdocs"
DAEMON_RE = "^[^ ]*python[^ ]* -m labtwin.nfsfuse.daemon"  # a pgrep pattern its own sh -c does not match
TOKEN = secrets.token_hex(4)


def _inventory(cluster) -> Path:
    """The twin's inventory with a known_hosts file of the test's own (labkit pins host keys)."""
    inv_path = Path(cluster.inventory_path)
    data = yaml.safe_load(inv_path.read_text())
    data["ssh"]["known_hosts"] = str(inv_path.parent / "known_hosts.test")
    mine = inv_path.parent / "inventory.test.yaml"
    mine.write_text(yaml.safe_dump(data))
    return mine


def _nfs_pod(cluster, name: str, node: str, image: str) -> None:
    spec = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "nfs"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": image,
                                     "volumeMounts": [{"name": "data", "mountPath": HTDOCS}]}],
                     "volumes": [{"name": "data", "nfs": {"server": cluster.hosts["master"], "path": "/nfsdata"}}]}}
    cluster.sh("master", f"echo '{json.dumps(spec)}' | kubectl apply -f -")


def _fuse_mounts(cluster, host: str) -> list[str]:
    """The nfsfuse mounts in a host's mountinfo: 'mountpoint fstype source'."""
    out = cluster.sh(host, "cat /proc/self/mountinfo")
    found = []
    for line in out.splitlines():
        pre, _, post = line.partition(" - ")
        if post.startswith("fuse.nfsfuse "):
            found.append(f"{pre.split()[4]} {post.split()[0]} {post.split()[1]}")
    return found


def _diagnostics(cluster, host: str) -> str:
    """What a failure message needs: the FUSE daemons' logs, processes stuck in the kernel
    (D state: waiting on the FUSE mount), the kubelet's last volume lines."""
    _, out, err = cluster.ssh(host, "tail -n 15 /var/log/labtwin-nfsfuse/*.log; "
                                    "ps -eo pid,stat,wchan:24,args | awk '$2 ~ /D/'; "
                                    "journalctl -u kubelet --no-pager -n 200 | grep -i -E 'nfs|volume|mount' | tail -n 15",
                              timeout=60)
    return f"--- {host}:\n{out}{err}"


def _daemons(cluster, host: str) -> list[str]:
    rc, out, _ = cluster.ssh(host, f"pgrep -af '{DAEMON_RE}'")
    return out.splitlines() if rc == 0 else []


@pytest.fixture(scope="module")
def web(cluster):
    """setup-nfs and setup-registry through labkit, and the web image in the lab registry."""
    from labkit import flows
    from labkit.inventory import load

    inv = load(_inventory(cluster))
    result = flows.setup_nfs(inv)
    assert [(r[0], r[2]) for r in result.checks] == [("node01", "ok"), ("node02", "ok")]
    image = cluster.registry_by_hand()
    checks = flows.setup_registry(inv).checks
    assert checks and all(r[2] == "ok" for r in checks), checks
    return image


def test_kubeadm_hosts_have_the_nfsfuse_helper_and_dev_fuse(cluster):
    for node in ("node01", "node02"):
        out = cluster.sh(node, "readlink -f /sbin/mount.nfs /sbin/mount.nfs4 && test -x /sbin/mount.nfs "
                               "&& test -x /sbin/mount.nfs4 && test -c /dev/fuse && mount.nfs -V")
        helper, helper4, version = out.splitlines()
        assert helper == helper4 == "/usr/local/lib/labtwin/mount.nfs"
        assert "labtwin nfsfuse" in version
        # argv contract: a spec without host:dir is a usage error, a missing mount point exit 32
        rc, _, err = cluster.ssh(node, "/sbin/mount.nfs nohost /mnt")
        assert (rc, err.splitlines()[0]) == (1, "mount.nfs: remote share not in 'host:dir' format")
        rc, _, err = cluster.ssh(node, f"/sbin/mount.nfs {cluster.hosts['master']}:/nfsdata /no/such/dir")
        assert rc == 32 and err.count("\n") == 1 and f"{cluster.hosts['master']}:/nfsdata" in err


def test_a_pod_serves_masters_export_through_the_nfs_mount(cluster, web):
    master = cluster.hosts["master"]
    cluster.sh("master", f"echo '<h1>from master {TOKEN}</h1>' > /nfsdata/index.html")
    _nfs_pod(cluster, "web-nfs", "node01", web)
    cluster.kubectl("wait --for=condition=Ready pod/web-nfs --timeout=120s", timeout=150)
    pod = cluster.kubectl_json("get pod web-nfs")
    uid, ip = pod["metadata"]["uid"], pod["status"]["podIP"]
    # the volume is a FUSE mount of master:/nfsdata made by the helper, not a bind of the disk
    mounts = _fuse_mounts(cluster, "node01")
    assert mounts == [f"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~nfs/data fuse.nfsfuse {master}:/nfsdata"]
    (daemon,) = _daemons(cluster, "node01")
    assert f"{master}:/nfsdata" in daemon
    assert "connected" in cluster.sh("node01", "cat /var/log/labtwin-nfsfuse/*kubernetes.io~nfs_data.log")
    # httpd (its workers run as `daemon`: allow_other) serves master's file
    assert f"from master {TOKEN}" in cluster.sh("master", f"curl -sf -m 5 http://{ip}/index.html")
    # a file master writes later shows up too
    cluster.sh("master", f"echo 'later {TOKEN}' > /nfsdata/later.txt")
    cluster.wait_for("master's new file in the pod", lambda: cluster.ssh(
        "master", f"curl -sf -m 5 http://{ip}/later.txt")[1].strip() == f"later {TOKEN}", timeout=30)


def test_what_the_pod_writes_reaches_master_over_nfs(cluster, web):
    # Right after setup-nfs, ganesha answers creates with NFS3ERR_JUKEBOX for its grace
    # period (~90 s); the FUSE client retries, so this may take that long.
    script = (f"echo 'from the pod {TOKEN}' > {HTDOCS}/from-pod.txt && "
              f"mkdir -p {HTDOCS}/tmp-dir/sub && echo x > {HTDOCS}/tmp-dir/sub/f && "
              f"mv {HTDOCS}/tmp-dir {HTDOCS}/made-dir && chmod 640 {HTDOCS}/from-pod.txt")
    cluster.kubectl(f"exec web-nfs -- sh -c {shlex.quote(script)}", timeout=200)
    assert cluster.sh("master", "cat /nfsdata/from-pod.txt") == f"from the pod {TOKEN}\n"
    assert cluster.sh("master", "stat -c %a /nfsdata/from-pod.txt").strip() == "640"
    assert cluster.sh("master", "cat /nfsdata/made-dir/sub/f; test ! -e /nfsdata/tmp-dir && echo gone") == "x\ngone\n"
    # a binary the pod copies arrives whole (writes are batched, sent at close at the latest):
    # the image's httpd is this machine's apache2, which master's root shows too
    cluster.kubectl(f"exec web-nfs -- cp /usr/local/apache2/bin/httpd {HTDOCS}/copy.bin", timeout=60)
    assert cluster.sh("master", "cmp /nfsdata/copy.bin /usr/sbin/apache2 && echo same") == "same\n"
    cluster.sh("master", "rm -rf /nfsdata/made-dir /nfsdata/copy.bin")


def test_a_kubelet_restart_keeps_the_mount(cluster, web):
    (before,) = _daemons(cluster, "node01")
    cluster.sh("node01", "systemctl restart kubelet")
    cluster.wait_for("node01's kubelet", lambda: cluster.ssh("node01", "systemctl is-active kubelet")[0] == 0)
    assert _daemons(cluster, "node01") == [before]  # its own systemd scope, not kubelet.service's cgroup
    ip = cluster.kubectl_json("get pod web-nfs")["status"]["podIP"]
    assert cluster.sh("master", f"curl -sf -m 5 http://{ip}/later.txt") == f"later {TOKEN}\n"
    # (exec goes through the kubelet's port, which listens a moment after the restart)
    cluster.wait_for("kubectl exec after the kubelet restart", lambda: cluster.ssh(
        "master", f"kubectl exec web-nfs -- cat {HTDOCS}/from-pod.txt")[1] == f"from the pod {TOKEN}\n")


def test_a_stopped_ganesha_shows_in_the_failed_mount_event(cluster, web):
    master = cluster.hosts["master"]
    cluster.sh("master", "systemctl stop nfs-ganesha")
    try:
        _nfs_pod(cluster, "web-down", "node02", web)
        events = cluster.wait_for("web-down's FailedMount event", lambda: [
            m for r, m in cluster.events_for("web-down") if r == "FailedMount" and "mount.nfs:" in m])
        msg = events[0]
        assert "exit status 32" in msg
        (line,) = [ln for ln in msg.splitlines() if ln.startswith("Output: mount.nfs:")]
        assert f"while mounting {master}:/nfsdata" in line, msg
        assert _fuse_mounts(cluster, "node02") == [] and _daemons(cluster, "node02") == []
    finally:
        cluster.kubectl("delete pod web-down --wait=true --ignore-not-found")
        cluster.sh("master", "systemctl start nfs-ganesha")


def test_deleting_the_pod_leaves_no_fuse_daemon_or_mount(cluster, web):
    cluster.kubectl("delete pod web-nfs --wait=false")
    try:
        cluster.wait_for("web-nfs to be deleted", lambda: cluster.ssh(
            "master", "kubectl get pod web-nfs")[0] != 0, timeout=90, interval=1)
        cluster.wait_for("node01's FUSE mount and daemon to go", lambda: (
            _fuse_mounts(cluster, "node01") == [] and _daemons(cluster, "node01") == []), timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnostics(cluster, 'node01')}") from None
    assert "nfsfuse" not in cluster.sh("node01", "systemctl list-units --all --type=scope --no-legend")
    log = cluster.sh("node01", "cat /var/log/labtwin-nfsfuse/*kubernetes.io~nfs_data.log")
    assert "unmounted from" in log and "exiting" in log


def test_down_leaves_no_fuse_mount_or_daemon_on_the_machine(cluster, web):
    from labtwin.hosts import lab

    _nfs_pod(cluster, "web-nfs", "node01", web)  # one mount live at teardown
    cluster.kubectl("wait --for=condition=Ready pod/web-nfs --timeout=120s", timeout=150)
    assert len(_fuse_mounts(cluster, "node01")) == 1
    source = f"{cluster.hosts['master']}:/nfsdata"  # other twins on this machine may run theirs
    lab.down(cluster.cfg)
    assert lab.leftovers(cluster.cfg) == []
    assert [ln for ln in Path("/proc/mounts").read_text().splitlines() if "nfsfuse" in ln] == []
    daemons = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"labtwin.nfsfuse.daemon" in cmd and source.encode() in cmd:
                daemons.append(f"{p.name} {cmd.decode(errors='replace')}")
    assert daemons == [], daemons
    assert os.path.exists("/dev/fuse")  # the machine's own node was never touched
