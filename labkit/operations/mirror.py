"""Mirror the images the lab needs from outside into the lab registry (issue 9, offline labs).

An image reference maps to the lab registry's copy by dropping its registry host:
``registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2`` ->
``<lab registry>/sig-storage/nfs-subdir-external-provisioner:v4.0.2``, Docker Hub's ``httpd:2.4`` ->
``<lab registry>/library/httpd:2.4`` (``mirror_ref``).

The planner takes each image from where the admin has it: the registry host's docker, or a
``docker save`` archive given with ``--from`` (uploaded to the registry host and ``docker load``-ed
there first). It tags and pushes only what the registry does not already hold with the same
content (``same_content``), so a re-run changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import tarfile
from dataclasses import dataclass, field
from typing import Iterator

from labkit import validate
from labkit.errors import OperationError
from labkit.operations.base import Command, Upload
from labkit.shell import quote

DOCKER_HUB = "docker.io"


# ------------------------------------------------------------------ references


@dataclass(frozen=True)
class Reference:
    """An image reference split as docker splits it: ``domain`` is the registry host
    (``docker.io`` for Docker Hub), ``path`` the repository without it."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def canonical(self) -> str:
        """``docker.io/library/httpd:2.4`` for ``httpd:2.4``: one spelling per image."""
        name = f"{self.domain}/{self.path}"
        if self.tag:
            name += f":{self.tag}"
        elif not self.digest:
            name += ":latest"
        return name + (f"@{self.digest}" if self.digest else "")


def parse_ref(ref: str) -> Reference:
    """Docker's rules (distribution/reference): the first component is a registry host when it has
    a '.' or a ':' or is 'localhost'; otherwise the image is on Docker Hub, and a one-component
    name there is under ``library/``."""
    validate.image_ref(ref)
    name, _, digest = ref.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return Reference(domain, path, tag, digest or None)


def mirror_tag(r: Reference) -> str:
    """The tag of the lab registry's copy: the reference's own tag; for a reference by digest only,
    ``sha256-<hex>`` (a push makes a new manifest, so the upstream digest cannot name the copy)."""
    if r.tag:
        return r.tag
    if r.digest:
        return r.digest.replace(":", "-", 1)[:128]
    return "latest"


def mirror_ref(ref: str, registry: str) -> str:
    """``<registry>/<path>:<tag>``: where the lab registry keeps its copy of ``ref``."""
    r = parse_ref(ref)
    return f"{registry}/{r.path}:{mirror_tag(r)}"


def canonical(ref: str) -> str:
    return parse_ref(ref).canonical


# ------------------------------------------------------------------ archives (`docker save`)


@dataclass(frozen=True)
class Archive:
    """A ``docker save`` archive on the machine running labkit: which tags it holds, each with the
    digest of its image config (= the image ID docker gives it when loaded)."""

    path: str
    size: int
    images: dict[str, str] = field(default_factory=dict)  # canonical ref -> sha256:<config digest>

    @property
    def upload_path(self) -> str:
        """Where it goes on the registry host: /tmp, named by the file's identity (path, size, mtime)."""
        st = os.stat(self.path)
        key = hashlib.sha256(f"{os.path.realpath(self.path)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        return f"/tmp/labkit-images-{key.hexdigest()[:12]}.tar"


def read_archive(path: str) -> Archive:
    """The tags of a ``docker save`` archive (classic layout and the OCI layout of docker 25+, both
    have ``manifest.json``; gzip/bzip2/xz compressed too, as ``docker load`` takes them)."""
    what = f"--from {path}"
    if not os.path.isfile(path):
        raise OperationError(f"{what}: no such file (give the archive `docker save -o FILE IMAGE...` wrote)")
    try:
        with tarfile.open(path, "r:*") as tar:
            try:
                member = tar.getmember("manifest.json")
            except KeyError:
                raise OperationError(f"{what}: not a `docker save` archive (it has no manifest.json)") from None
            fh = tar.extractfile(member)
            manifest = json.loads(fh.read()) if fh else []
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise OperationError(f"{what}: not a readable `docker save` archive ({exc})") from None
    images: dict[str, str] = {}
    for entry in manifest if isinstance(manifest, list) else []:
        config = str(entry.get("Config") or "")
        digest = "sha256:" + config.rsplit("/", 1)[-1].removesuffix(".json")
        for tag in entry.get("RepoTags") or []:
            try:
                images[canonical(tag)] = digest
            except ValueError:
                continue
    if not images:
        raise OperationError(f"{what}: the archive names no image (save images by name: "
                             "`docker save -o FILE NAME:TAG ...`, not by ID)")
    return Archive(path, os.path.getsize(path), images)


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


# ------------------------------------------------------------------ the planner


@dataclass(frozen=True)
class Wanted:
    """One image the lab needs: the inventory field naming it, its reference there, its copy."""

    field: str
    source: str
    mirror: str


def same_content(remote: dict | None, *, mirror: str, image: dict | None = None,
                 config: str | None = None) -> bool:
    """The registry's tag holds this image, proven by a digest, never by a name:
    - the config digest its manifest names (the manifest verified against Docker-Content-Digest)
      is the image's config: the local image ID (docker's image ID is its config digest) or the
      archive's config; the config lists every layer's diff ID, so the content is the same;
    - or Docker-Content-Digest is one docker recorded for this image in the copy's repository
      (RepoDigests, written by a push or pull of exactly that manifest), or the image ID itself
      (docker's containerd image store names an image by its manifest digest)."""
    if not remote or remote.get("error"):
        return False
    have = remote.get("config") if remote.get("verified") else None
    digest = remote.get("digest")
    if config and have == config:
        return True
    if image:
        if have and have == image.get("id"):
            return True
        name = mirror.rsplit(":", 1)[0]  # <registry>/<path>, as RepoDigests spell it
        pushed = {d.split("@", 1)[1] for d in image.get("repo_digests") or [] if d.split("@", 1)[0] == name}
        if digest and (digest in pushed or digest == image.get("id")):
            return True
    return False


def missing_error(missing: list[Wanted], host: str, registry: str, archive: Archive | None) -> OperationError:
    where = f"not in {host}'s docker" + (f", not in {archive.path}" if archive else "")
    names = " ".join(quote(w.source) for w in missing)
    pulls = " && ".join(f"docker pull {quote(w.source)}" for w in missing)
    listing = "; ".join(f"{w.field} {w.source}" for w in missing)
    return OperationError(
        f"{listing}: {where} and not in the lab registry {registry}. On a machine with internet access run "
        f"`{pulls} && docker save -o images.tar {names}`, copy images.tar to this machine and run "
        "`invoke mirror-images --from images.tar`")


def mirror_images(*, wanted: list[Wanted], local: dict[str, dict | None], remote: dict[str, dict | None],
                  registry: str, host: str, archive: Archive | None = None,
                  upload_path: str = "") -> Iterator[Command | Upload]:
    """``local[ref]``: the registry host's docker image of ``ref`` (each source and mirror) or None;
    ``remote[mirror]``: the registry's manifest of the copy (``RegistryManifest``) or None;
    ``archive``/``upload_path``: the ``--from`` archive and where it goes on the registry host.

    Per image, the source is the archive's image when ``--from`` holds it (unless docker already has
    that very image), else the registry host's docker (its public name, else a copy already tagged
    for the lab registry). Nothing is done when the registry has the same content; an image found
    nowhere is an error naming it and the fix, unless the registry already holds its copy."""
    q = shlex.quote
    todo: list[tuple[Wanted, str]] = []   # (image, what the copy is tagged from; "" = push as tagged)
    loaded: list[str] = []                # sources the archive gives
    missing: list[Wanted] = []
    for w in wanted:
        src, copy, have = local.get(w.source), local.get(w.mirror), remote.get(w.mirror)
        in_archive = None
        if archive is not None and not parse_ref(w.source).digest:  # a save archive keeps tags, not digests
            in_archive = archive.images.get(canonical(w.source))
        if in_archive and not (src and src.get("id") == in_archive):
            # --from holds it and docker does not have that very image: the archive is the source
            if not same_content(have, mirror=w.mirror, config=in_archive):
                loaded.append(w.source)
                todo.append((w, w.source))
        elif src is not None:
            if not same_content(have, mirror=w.mirror, image=src):
                same_id = w.mirror == w.source or (copy is not None and copy.get("id") == src.get("id"))
                todo.append((w, "" if same_id else w.source))
        elif copy is not None:  # tagged for the lab registry already (by the admin, or an earlier run)
            if not same_content(have, mirror=w.mirror, image=copy):
                todo.append((w, ""))
        elif not (have and not have.get("error")):
            missing.append(w)
    if missing:
        raise missing_error(missing, host, registry, archive)
    if loaded:
        yield Upload(upload_path, archive.path, size=archive.size,
                     description=f"upload {archive.path} ({human_size(archive.size)}) from this machine")
        yield Command(f"docker load -i {q(upload_path)}; rc=$?; rm -f {q(upload_path)}; exit $rc",
                      description=f"docker load {os.path.basename(archive.path)} ({', '.join(loaded)}), "
                                  "then remove the upload")
    for w, tag_from in todo:
        if tag_from:
            yield Command(f"docker tag {q(tag_from)} {q(w.mirror)}", description=f"tag {tag_from} as {w.mirror}")
        yield Command(f"docker push {q(w.mirror)}", description=f"push {w.mirror} ({w.field})")
