"""Image facts for mirror-images: an image in a host's docker (``docker image inspect``) and a tag
in the lab registry (``GET /v2/<name>/manifests/<tag>``: its ``Docker-Content-Digest`` and the
config digest its manifest names).

Together they say whether the registry already holds the image with the same content: see
``labkit.operations.mirror.same_content``.
"""
from __future__ import annotations

import hashlib
import json
import re

from labkit import validate
from labkit.errors import OperationError
from labkit.facts.base import Fact, FactResult
from labkit.facts.registry import _ADDR, _check
from labkit.shell import quote

# One JSON object per image: what labkit compares, not the whole inspect output.
INSPECT_FORMAT = ('{"Id":{{json .Id}},"RepoTags":{{json .RepoTags}},"RepoDigests":{{json .RepoDigests}},'
                  '"Size":{{json .Size}}}')

# What a registry may hold at a tag: an image manifest (docker schema 2, OCI) or a list/index of
# them. Asking for all four gets the manifest as pushed, with the digest it was pushed under.
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.index.v1+json")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class LocalImage(Fact):
    """``docker image inspect REF`` -> {"id", "repo_tags", "repo_digests", "size"}, or None when this
    docker has no such image. Any other failure (no daemon, no docker) is an error naming it."""

    ok_exit_codes = (0, 1, 127)
    sudo = True

    def __init__(self, ref: str):
        self.ref = validate.image_ref(ref)

    def build(self) -> str:
        return f"docker image inspect --format {quote(INSPECT_FORMAT)} {quote(self.ref)}"

    def process(self, result: FactResult) -> dict | None:
        if result.exited == 127:
            raise OperationError("docker is not installed on this host (mirror-images pushes with the "
                                 "registry host's docker)")
        if result.exited != 0:
            said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            if "no such image" in said.lower():
                return None
            raise OperationError(f"docker image inspect {self.ref} failed: {said}")
        data = json.loads(result.stdout.strip().splitlines()[-1])
        return {"id": data.get("Id"), "repo_tags": list(data.get("RepoTags") or []),
                "repo_digests": list(data.get("RepoDigests") or []), "size": data.get("Size")}


def split_response(text: str) -> tuple[int | None, dict[str, str], str]:
    """``curl -i`` output -> (status, headers with lower-case names, body). The last header block
    wins (a proxy's ``100 Continue`` or a redirect comes first)."""
    status, headers, rest = None, {}, text
    while rest.startswith("HTTP/"):
        for sep in ("\r\n\r\n", "\n\n"):
            if sep in rest:
                head, rest = rest.split(sep, 1)
                break
        else:
            head, rest = rest, ""
        lines = head.splitlines()
        status, headers = int(lines[0].split()[1]), {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers, rest


class RegistryManifest(Fact):
    """``GET /v2/<repository>/manifests/<tag>`` in the lab registry -> None when the registry has no
    such tag (404), else {"digest": Docker-Content-Digest, "media_type", "config": the config
    digest the manifest names (None for a list/index), "verified": the body hashes to the digest,
    "error": None}. An unreachable registry or another status is {"error": ...}: the step says
    what to do (setup-registry)."""

    ok_exit_codes = tuple(range(0, 128))

    def __init__(self, address: str, repository: str, tag: str):
        self.address = _check(_ADDR, address, "registry address")
        self.repository = validate.repository(repository)  # docker's grammar, as the inventory's references
        self.tag = validate.image_tag(tag)

    def build(self) -> str:
        url = f"http://{self.address}/v2/{self.repository}/manifests/{self.tag}"
        accept = "Accept: " + ", ".join(MANIFEST_TYPES)
        return f"curl -sS -i -m 10 -H {quote(accept)} {quote(url)}"

    def process(self, result: FactResult) -> dict | None:
        if result.exited != 0:
            said = (result.stderr.strip() or f"curl exited {result.exited}").splitlines()[-1]
            if result.exited == 127:
                said = "curl is not installed on this host"
            return {"error": said}
        status, headers, body = split_response(result.stdout)
        if status == 404:
            return None
        if status != 200:
            return {"error": f"GET /v2/{self.repository}/manifests/{self.tag}: HTTP {status}: {body.strip()[:200]}"}
        digest = headers.get("docker-content-digest")
        data = json.loads(body)
        config = (data.get("config") or {}).get("digest")
        return {"digest": digest if digest and _DIGEST.match(digest) else None,
                "media_type": data.get("mediaType") or headers.get("content-type"),
                "config": config if config and _DIGEST.match(config) else None,
                "verified": bool(digest) and "sha256:" + hashlib.sha256(body.encode()).hexdigest() == digest,
                "error": None}
