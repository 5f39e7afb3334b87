"""`invoke mirror-images` on the twin (issue 9, offline labs), in file order.

The kubeadm twin is an offline lab: the NFS provisioner's image is only in master's docker under its
public name (no worker's containerd has it), and the twin's inventory says `images.mirror: true`.
mirror-images copies it (with registry:2 and httpd:2.4) into the lab registry; --plan changes
nothing; a re-run changes nothing; a `docker save` archive given with --from is uploaded and loaded;
then `invoke up` deploys the provisioner from the lab registry's copy and its pod runs on a worker
that pulled it through containerd's hosts.toml trust.

Own twin (env LABTWIN_CLUSTER_NAME, default `ltk8s`, on the first free /24 from
LABTWIN_CLUSTER_SUBNET), made by labkit's setup-cluster, down at the end. Checks read the hosts
through nsenter (`Cluster.sh`) and the registry with curl on master, never through labkit.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from clusterkit import INVOKE, REPO, Cluster, invoke

pytestmark = pytest.mark.cluster

PROV = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
COPY_PATH, COPY_TAG = "sig-storage/nfs-subdir-external-provisioner", "v4.0.2"
BASE = "example.org/team/base:1.0"  # an image only an archive has (built here, saved, removed)
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"


def run(cluster: Cluster, *args: str, inventory: Path | None = None) -> tuple[int, str, float]:
    """`invoke ARGS -i INVENTORY` as a user runs it -> (exit code, output, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run([str(INVOKE), *args, "-i", str(inventory or cluster.inventory_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


def copy_of(cluster: Cluster, path: str = COPY_PATH, tag: str = COPY_TAG) -> str:
    return f"{cluster.registry}/{path}:{tag}"


def snapshot(cluster: Cluster) -> dict[str, str]:
    """What mirror-images may change, read without labkit: master's images and uploads, the registry's
    repositories, every worker's containerd images."""
    snap = {"master": cluster.sh("master", "docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' "
                                           "| sort; ls /tmp/labkit-images-* 2>/dev/null; "
                                           "curl -s http://127.0.0.1:5000/v2/_catalog; true")}
    for w in ("node01", "node02"):
        snap[w] = cluster.sh(w, "ctr -n k8s.io images ls -q | sort")
    return snap


def registry_manifest(cluster: Cluster, path: str, tag: str) -> tuple[str | None, dict | None]:
    """(Docker-Content-Digest, manifest) of path:tag in the lab registry, by curl on master."""
    rc, out, _ = cluster.ssh("master", f"curl -sf -D /tmp/h -H 'Accept: {ACCEPT}' "
                                       f"http://127.0.0.1:5000/v2/{path}/manifests/{tag} && "
                                       "grep -i '^docker-content-digest:' /tmp/h")
    if rc != 0:
        return None, None
    body, _, header = out.rpartition("}")
    return header.split(":", 1)[1].strip(), json.loads(body + "}")


def image_id(cluster: Cluster, ref: str) -> str:
    return cluster.sh("master", f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(ref)}").strip()


def test_the_provisioner_is_only_in_masters_docker(cluster):
    inv = yaml.safe_load(Path(cluster.inventory_path).read_text())
    assert inv["images"]["mirror"] is True
    assert image_id(cluster, PROV).startswith("sha256:")
    for w in ("node01", "node02"):
        assert PROV not in cluster.sh(w, "ctr -n k8s.io images ls -q").split(), w


def test_before_setup_registry_it_says_what_to_do(cluster):
    rc, out, _ = run(cluster, "mirror-images", "--plan")
    assert rc == 1 and "not reachable from master" in out and "run setup-registry first" in out


def test_plan_changes_nothing(cluster):
    invoke(cluster, "setup-registry")
    before = snapshot(cluster)
    rc, out, _ = run(cluster, "mirror-images", "--plan")
    assert rc == 0, out
    assert "plan mode: nothing will be changed" in out
    assert f"tag {PROV} as {copy_of(cluster)}" in out
    assert f"push {copy_of(cluster)} (kubernetes.provisioner.image)" in out
    assert f"push {copy_of(cluster, 'library/registry', '2')} (registry.image)" in out
    assert f"push {copy_of(cluster, 'library/httpd', '2.4')} (images.web.base)" in out
    assert snapshot(cluster) == before
    assert '{"repositories":[]}' in before["master"]


def test_mirror_images_pushes_the_provisioner(cluster):
    rc, out, took = run(cluster, "mirror-images")
    assert rc == 0, out
    print(f"\nmirror-images, fresh: {took:.2f}s")
    assert "master  mirror images to" in out and "changed  6 change(s)" in out
    for path, tag, ref in ((COPY_PATH, COPY_TAG, PROV), ("library/registry", "2", "registry:2"),
                           ("library/httpd", "2.4", "httpd:2.4")):
        digest, manifest = registry_manifest(cluster, path, tag)
        assert digest and digest.startswith("sha256:"), path
        # the registry's copy is master's image: its config is the image docker has (the image ID)
        assert manifest["config"]["digest"] == image_id(cluster, ref), path
        assert f"master  GET {copy_of(cluster, path, tag)}: ok - {digest}" in out  # read back by labkit


def test_a_rerun_changes_nothing(cluster):
    before = snapshot(cluster)
    rc, out, took = run(cluster, "mirror-images")
    assert rc == 0, out
    print(f"\nmirror-images, re-run: {took:.2f}s")
    assert "master  plan: no change" in out and "would change" not in out and "changed" not in out
    assert snapshot(cluster) == before


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory) -> Path:
    """A `docker save` archive of an image master's docker then loses: made on master (a distinct
    image, offline: FROM httpd:2.4 plus a label), copied to this machine through master's root."""
    from labtwin.hosts import lab

    cluster.sh("master", f"printf 'FROM httpd:2.4\\nLABEL org.example.offline=yes\\n' | "
                         f"docker build -q -t {BASE} - >/dev/null && docker save -o /root/base.tar {BASE} && "
                         f"docker rmi {BASE} >/dev/null")
    pid = lab.init_pid(cluster.cfg, cluster.cfg.host("master"))
    out = tmp_path_factory.mktemp("archive") / "base.tar"
    out.write_bytes(Path(f"/proc/{pid}/root/root/base.tar").read_bytes())
    cluster.sh("master", "rm -f /root/base.tar")
    return out


@pytest.fixture(scope="module")
def base_inventory(cluster, tmp_path_factory) -> Path:
    """The twin's inventory with that image as the web base."""
    data = yaml.safe_load(Path(cluster.inventory_path).read_text())
    data["images"]["web"]["base"] = BASE
    path = tmp_path_factory.mktemp("inv") / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_an_image_found_nowhere_is_an_error_naming_it_and_the_fix(cluster, archive, base_inventory):
    rc, out, _ = run(cluster, "mirror-images", inventory=base_inventory)
    out = " ".join(out.split())
    assert rc == 1
    assert (f"images.web.base {BASE}: not in master's docker and not in the lab registry {cluster.registry}. "
            f"On a machine with internet access run `docker pull {BASE} && docker save -o images.tar {BASE}`, "
            "copy images.tar to this machine and run `invoke mirror-images --from images.tar`") in out


def test_from_a_docker_save_archive(cluster, archive, base_inventory):
    from labkit.operations.mirror import human_size, read_archive

    config = read_archive(str(archive)).images[BASE]  # the config digest the archive names
    before = snapshot(cluster)
    rc, out, _ = run(cluster, "mirror-images", "--plan", "--from", str(archive), inventory=base_inventory)
    assert rc == 0, out
    assert f"upload {archive} ({human_size(archive.stat().st_size)}) from this machine" in out
    assert f"docker load {archive.name} ({BASE}), then remove the upload" in out
    assert f"push {copy_of(cluster, 'team/base', '1.0')} (images.web.base)" in out
    assert snapshot(cluster) == before  # plan mode: nothing uploaded, loaded or pushed

    rc, out, took = run(cluster, "mirror-images", "--from", str(archive), inventory=base_inventory)
    assert rc == 0, out
    print(f"\nmirror-images --from ({human_size(archive.stat().st_size)}): {took:.2f}s")
    assert image_id(cluster, BASE) == config  # loaded on master
    digest, manifest = registry_manifest(cluster, "team/base", "1.0")
    assert manifest["config"]["digest"] == config
    assert cluster.sh("master", "ls /tmp/labkit-images-* 2>/dev/null; true").strip() == ""  # upload removed

    rc, out, _ = run(cluster, "mirror-images", "--from", str(archive), inventory=base_inventory)
    assert rc == 0 and "master  plan: no change" in out and "upload" not in out, out


def test_up_plan_shows_mirror_images_in_order(cluster):
    rc, out, _ = run(cluster, "up", "--plan")
    assert rc == 0, out
    table = out[out.index("up: plan (plan mode: nothing was changed):"):].splitlines()[1:]
    steps = [line.split()[0] for line in table if line.startswith("  ")]
    assert steps[:5] == ["setup-cluster", "setup-registry", "setup-nfs", "mirror-images", "build-images"]
    assert "  mirror-images  no change" in out


def test_the_provisioner_runs_on_a_worker_from_the_lab_registrys_copy(cluster):
    rc, out, _ = run(cluster, "up")
    assert rc == 0, out[-4000:]
    assert "mirror-images: result:" in out and "verify: 10/10 pods ok" in " ".join(out.split())
    (pod,) = cluster.kubectl_json("get pods -l app=nfs-client-provisioner")["items"]
    node = pod["spec"]["nodeName"]
    assert node in ("node01", "node02") and pod["status"]["phase"] == "Running"
    assert pod["spec"]["containers"][0]["image"] == copy_of(cluster)
    digest, _ = registry_manifest(cluster, COPY_PATH, COPY_TAG)
    assert pod["status"]["containerStatuses"][0]["imageID"] == f"{cluster.registry}/{COPY_PATH}@{digest}"
    # pulled by that worker's containerd from the lab registry; the public name is nowhere there
    images = cluster.sh(node, "ctr -n k8s.io images ls -q").split()
    assert copy_of(cluster) in images and PROV not in images
    pulled = [m for r, m in cluster.events_for(pod["metadata"]["name"]) if r == "Pulled"]
    assert any(copy_of(cluster) in m for m in pulled), pulled
