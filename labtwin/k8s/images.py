"""The images kubeadm asks for, built locally from the binaries labtwin.k8s.build made.

Nothing can be pulled here, so each image `kubeadm config images list` names (but CoreDNS, whose
addon the twin skips) is written as a `docker save` archive under its exact public tag and
imported into each node's containerd (`ctr -n k8s.io images import`), as an offline kubeadm lab
preloads them. With the tags present, the kubelet pulls nothing.
  kube-apiserver, kube-controller-manager, kube-scheduler, etcd: one layer with the multicall
      binary and its command links in /usr/local/bin (the layer is the same for all four)
  kube-proxy: the same plus this machine's iptables (nft backend, as the hosts use) and its
      extensions, which kube-proxy runs to program Services
  pause: the sandbox process (labtwin/k8s/pause) as /pause
Not a kubeadm image, so written apart from kubeadm's list, under the tag labkit's inventory uses:
  registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2: the provisioner built from
      labtwin/k8s/provisioner as /nfs-subdir-external-provisioner (the entrypoint, as upstream's
      image), /persistentvolumes its mount point. Where it goes is not where kubeadm's go:
      lab._start loads it into master's docker and cluster.import_images into the workers'
      containerd only.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from labtwin.hosts.images import PROVISIONER_TAG, Image, save_archive

from . import build

RECIPE = "1"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
XTABLES = Path("/usr/sbin/xtables-nft-multi")
XTABLES_EXT = Path("/usr/lib/x86_64-linux-gnu/xtables")
IPTABLES_LINKS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                  "ip6tables-restore")


def kubeadm_images(bin_dir: Path, version: str) -> list[str]:
    """What this kubeadm needs for this version, from kubeadm itself (works offline)."""
    p = subprocess.run([str(bin_dir / "kubeadm"), "config", "images", "list",
                        "--kubernetes-version", version], capture_output=True, text=True)
    if p.returncode != 0:
        raise build.BuildError(f"kubeadm config images list failed: {p.stderr.strip()}")
    return p.stdout.split()


def _base(tag: str, bin_dir: Path, entrypoint: list[str] | None = None) -> Image:
    img = Image(tag, {"Env": [PATH_ENV], **({"Entrypoint": entrypoint} if entrypoint else {})})
    for d in ("/etc", "/tmp", "/var", "/var/run", "/run", "/usr/local/bin"):
        img.add_dir(d, 0o1777 if d == "/tmp" else 0o755)
    img.add_file("/etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n")
    img.add_file("/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    img.add_file("/etc/nsswitch.conf", b"hosts: files dns\n")
    img.add_file("/usr/local/bin/k8s", bin_dir / "k8s", 0o755)
    for cmd in build.K8S_COMMANDS:
        img.add_link(f"/usr/local/bin/{cmd}", "k8s")
    return img


def _add_iptables(img: Image) -> None:
    img.add_binary(str(XTABLES), "/usr/sbin/xtables-nft-multi")
    for name in IPTABLES_LINKS:
        img.add_link(f"/usr/sbin/{name}", "xtables-nft-multi")
    for ext in sorted(XTABLES_EXT.glob("*.so")):  # matches and targets are dlopen'ed
        img.add_binary(str(ext))


def image_for(tag: str, bin_dir: Path) -> Image | None:
    name = tag.rsplit("/", 1)[1].split(":")[0]
    if name == "pause":
        img = Image(tag, {"Env": [PATH_ENV], "Entrypoint": ["/pause"], "User": "65535:65535"})
        img.add_file("/pause", bin_dir / "pause", 0o755)
        return img
    if name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        return _base(tag, bin_dir)
    if name == "kube-proxy":
        img = _base(tag, bin_dir)
        _add_iptables(img)
        return img
    return None  # coredns: the twin skips kubeadm's CoreDNS addon (nothing resolves names)


def provisioner_image(bin_dir: Path) -> Image:
    img = Image(PROVISIONER_TAG, {"Env": [PATH_ENV], "Entrypoint": ["/nfs-subdir-external-provisioner"]})
    for d in ("/etc", "/tmp", "/persistentvolumes"):
        img.add_dir(d, 0o1777 if d == "/tmp" else 0o755)
    img.add_file("/etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n")
    img.add_file("/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    img.add_file("/nfs-subdir-external-provisioner", bin_dir / "nfs-subdir-external-provisioner", 0o755)
    return img


def archive_name(tag: str) -> str:
    return tag.rsplit("/", 1)[1].replace(":", "_") + ".tar"


def _key() -> str:
    h = hashlib.sha256(RECIPE.encode() + Path(__file__).read_bytes())
    for p in (XTABLES, *sorted(XTABLES_EXT.glob("*.so"))):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def ensure_images(say=print) -> dict[str, Path]:
    """tag -> archive, built once per build dir and recipe."""
    bin_dir = build.ensure_built(say)
    version = build.versions()["kubernetes"]
    out = bin_dir.parent / f"images-{_key()}"
    index = out / "index.json"
    if index.exists():
        return {t: out / a for t, a in json.loads(index.read_text()).items()}
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for tag in kubeadm_images(bin_dir, version):
        img = image_for(tag, bin_dir)
        if img is None:
            continue
        say(f"  image {tag}")
        save_archive(img, out / archive_name(tag))
        made[tag] = archive_name(tag)
    say(f"  image {PROVISIONER_TAG}")  # kubeadm does not list it
    save_archive(provisioner_image(bin_dir), out / archive_name(PROVISIONER_TAG))
    made[PROVISIONER_TAG] = archive_name(PROVISIONER_TAG)
    index.write_text(json.dumps(made, indent=1))
    return {t: out / a for t, a in made.items()}
