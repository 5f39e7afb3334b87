"""labtwin's build of the NFS provisioner (issue 8), without hosts: its Go module in the build and
the cache key, its image under the tag labkit's inventory uses, and that the twin preloads it nowhere.
The Go logic itself (directories, PVs, deletes) is tested by `go test` in labtwin/k8s/provisioner,
which `make test` runs."""
from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from labtwin.hosts import cluster
from labtwin.hosts.images import PROVISIONER_TAG
from labtwin.k8s import build, images

REPO = Path(__file__).resolve().parents[2]
KUBEADM_TAGS = ["registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/kube-proxy:v1.37.2",
                "registry.k8s.io/pause:3.10.2", "registry.k8s.io/etcd:3.7.0-0"]


def test_the_image_tag_is_the_one_labkits_inventory_deploys():
    from labkit.inventory import Provisioner

    assert PROVISIONER_TAG == Provisioner().image == "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"


def test_the_provisioner_is_a_component_of_its_own_module_with_a_version_stamp():
    (c,) = [c for c in build.components() if c.name == "nfs-subdir-external-provisioner"]
    assert (c.module, c.package, c.output, c.cgo) == (build.PROVISIONER, ".", "nfs-subdir-external-provisioner", False)
    assert build.PROVISIONER in build.MODULES
    assert "-X main.version=v4.0.2-labtwin" in c.ldflags
    pins = build.module_versions(build.PROVISIONER / "go.mod")
    assert pins[build.PROVISIONER_LIB] == "v13.1.0"
    assert pins["k8s.io/client-go"] == "v0.37.2"  # the cluster's release
    assert f"-X k8s.io/client-go/pkg/version.gitVersion={pins['k8s.io/client-go']}" in c.ldflags


def test_the_cache_key_covers_the_provisioners_source_but_not_its_tests(monkeypatch):
    key = build.cache_key("go1.26.8")
    read = Path.read_bytes

    def edited(name):
        def read_bytes(self):
            return read(self) + (b"\n// edited\n" if self == build.PROVISIONER / name else b"")
        return read_bytes

    monkeypatch.setattr(Path, "read_bytes", edited("main.go"))
    assert build.cache_key("go1.26.8") != key
    monkeypatch.setattr(Path, "read_bytes", edited("go.sum"))
    assert build.cache_key("go1.26.8") != key
    monkeypatch.setattr(Path, "read_bytes", edited("main_test.go"))
    assert build.cache_key("go1.26.8") == key


def _archive(path: Path) -> tuple[dict, dict, dict[str, tarfile.TarInfo]]:
    with tarfile.open(path) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest["Config"]))
        (layer,) = manifest["Layers"]
        with tarfile.open(fileobj=io.BytesIO(tar.extractfile(layer).read())) as lt:
            members = {m.name: m for m in lt.getmembers()}
    return manifest, config, members


def test_ensure_images_writes_the_provisioner_apart_from_kubeadms_list(tmp_path, monkeypatch):
    bin_dir = tmp_path / "key" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("k8s", "pause", "nfs-subdir-external-provisioner"):
        (bin_dir / name).write_bytes(b"\x7fELF " + name.encode())
    monkeypatch.setattr(build, "ensure_built", lambda say: bin_dir)
    monkeypatch.setattr(images, "kubeadm_images", lambda b, v: KUBEADM_TAGS)
    monkeypatch.setattr(images, "_add_iptables", lambda img: None)  # this machine's files: not the point here
    said = []
    archives = images.ensure_images(said.append)
    assert list(archives) == [*KUBEADM_TAGS, PROVISIONER_TAG]
    assert f"  image {PROVISIONER_TAG}" in said

    manifest, config, members = _archive(archives[PROVISIONER_TAG])
    assert manifest["RepoTags"] == [PROVISIONER_TAG]
    assert config["config"]["Entrypoint"] == ["/nfs-subdir-external-provisioner"]
    binary = members["nfs-subdir-external-provisioner"]
    assert binary.isfile() and binary.mode == 0o755 and binary.size == len(b"\x7fELF nfs-subdir-external-provisioner")
    assert members["persistentvolumes"].isdir()
    assert "usr/local/bin/k8s" not in members  # only the provisioner: not the multicall binary
    # a second call finds the index
    assert images.ensure_images(said.append) == archives


def test_the_provisioner_is_preloaded_into_no_containerd():
    # an offline lab's admin has it in master's docker only; labkit's mirror-images puts it in the
    # lab registry, from where the workers pull it (issue 9)
    tags = [*KUBEADM_TAGS, "registry.k8s.io/kube-scheduler:v1.37.2", PROVISIONER_TAG]
    master = [t for t in tags if cluster._preloaded(t, is_master=True)]
    worker = [t for t in tags if cluster._preloaded(t, is_master=False)]
    assert PROVISIONER_TAG not in master and set(master) == set(tags) - {PROVISIONER_TAG}
    assert worker == ["registry.k8s.io/kube-proxy:v1.37.2", "registry.k8s.io/pause:3.10.2"]


def test_make_test_runs_the_provisioners_go_tests():
    target = re.search(r"^test:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "cd labtwin/k8s/provisioner && GOTOOLCHAIN=local go test ./..." in target
