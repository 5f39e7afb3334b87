"""ControllerRevisions and template hashes, computed the way the real controllers compute them.

StatefulSet (pkg/controller/history): the revision's data is the JSON patch
{"spec":{"template":{...,"$patch":"replace"}}} marshalled with sorted keys; its hash is FNV-1 32 of
those bytes plus the decimal collision count, encoded with rand.SafeEncodeString; the revision is
named <set>-<hash> and that name is the pods' controller-revision-hash label.
Deployment (pkg/controller: ComputeHash): FNV-1a 32 of the pod template plus the collision count,
SafeEncodeString'd, is the pod-template-hash. Go hashes the template with a spew dump; here the
canonical JSON of the template is hashed instead, so values differ from a real cluster's but keep
the same properties (stable, template-determined, collision-probed).
"""
from __future__ import annotations

import json

from .common import controller_ref, deepcopy

ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand: no vowels, no 0/1/3
HASH_LABEL = "controller.kubernetes.io/hash"
REVISION_LABEL = "controller-revision-hash"


def safe_encode(s: str) -> str:
    return "".join(ALPHANUMS[b % len(ALPHANUMS)] for b in s.encode())


def fnv1_32(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


def fnv1a_32(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def go_json(obj) -> bytes:
    """encoding/json.Marshal of a map[string]interface{}: sorted keys, compact, HTML-escaped."""
    s = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def statefulset_patch(sset: dict) -> dict:
    """getPatch: only the template is part of a revision; $patch replace makes it replace wholesale."""
    tpl = deepcopy(sset.get("spec", {}).get("template") or {})
    tpl["$patch"] = "replace"
    return {"spec": {"template": tpl}}


def hash_revision(data: dict, probe: int | None) -> str:
    h = fnv1_32(go_json(data))
    if probe is not None:
        h = fnv1_32(str(probe).encode(), h)
    return safe_encode(str(h))


def revision_name(prefix: str, hsh: str) -> str:
    return f"{prefix[:223]}-{hsh}"


def new_statefulset_revision(sset: dict, revision: int, collision_count: int) -> dict:
    data = statefulset_patch(sset)
    hsh = hash_revision(data, collision_count)
    labels = dict((sset.get("spec", {}).get("template", {}).get("metadata", {}) or {}).get("labels") or {})
    labels[HASH_LABEL] = hsh
    md = sset["metadata"]
    return {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": revision_name(md["name"], hsh), "namespace": md.get("namespace"),
                     "labels": labels, "ownerReferences": [controller_ref(sset, "apps/v1", "StatefulSet")]},
        "data": data,
        "revision": revision,
    }


def equal_revision(a: dict, b: dict) -> bool:
    la = (a.get("metadata", {}).get("labels") or {}).get(HASH_LABEL)
    lb = (b.get("metadata", {}).get("labels") or {}).get(HASH_LABEL)
    if la != lb:
        return False
    return go_json(a.get("data")) == go_json(b.get("data"))


def sort_revisions(revs: list[dict]) -> list[dict]:
    return sorted(revs, key=lambda r: (r.get("revision", 0), r["metadata"].get("creationTimestamp", ""),
                                       r["metadata"]["name"]))


def next_revision(revs: list[dict]) -> int:
    return (max((r.get("revision", 0) for r in revs), default=0)) + 1


def apply_revision(sset: dict, rev: dict) -> dict:
    """ApplyRevision: the set with the revision's template ($patch replace)."""
    out = deepcopy(sset)
    tpl = deepcopy(rev["data"]["spec"]["template"])
    tpl.pop("$patch", None)
    out["spec"]["template"] = tpl
    return out


def pod_template_hash(template: dict, collision_count: int | None) -> str:
    h = fnv1a_32(go_json(template))
    if collision_count is not None:
        h = fnv1a_32((collision_count & 0xFFFFFFFF).to_bytes(4, "little"), h)
    return safe_encode(str(h))
