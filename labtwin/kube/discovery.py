"""Discovery documents: aggregated (apidiscovery.k8s.io v2 / v2beta1, what kubectl >= 1.26
asks for first) and legacy (/api, /api/v1, /apis, /apis/<group>/<version>, what kubectl 1.20
uses). Both are built from resources.RESOURCES, so a kind or version that is not listed there
(extensions/v1beta1, apps/v1beta1, ...) does not exist for kubectl, as on a real 1.32 server."""

from __future__ import annotations

from . import resources as R

SERVER_VERSION = {
    "major": "1", "minor": "32", "emulationMajor": "1", "emulationMinor": "32",
    "minCompatibilityMajor": "1", "minCompatibilityMinor": "31",
    "gitVersion": "v1.32.0-labtwin", "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.4",
    "compiler": "gc", "platform": "linux/amd64",
}


def _gvk(r: R.Resource) -> dict:
    return {"group": r.group, "version": r.version, "kind": r.kind}


def _sub_kind(r: R.Resource, sub: str) -> dict:
    return dict(R.SCALE_GVK) if sub == "scale" else _gvk(r)


def aggregated(core: bool, version: str) -> dict:
    """APIGroupDiscoveryList for /api (core=True) or /apis; version is v2 or v2beta1."""
    items = []
    for g in R.groups():
        if (g == "") != core:
            continue
        versions = []
        for v in R.versions_of(g):
            res = []
            for r in R.resources_in(g, v):
                d = {"resource": r.plural, "responseKind": _gvk(r),
                     "scope": "Namespaced" if r.namespaced else "Cluster",
                     "singularResource": r.singular, "verbs": list(R.VERBS_ALL)}
                if r.short_names:
                    d["shortNames"] = list(r.short_names)
                if r.categories:
                    d["categories"] = list(r.categories)
                subs = [{"subresource": s, "responseKind": _sub_kind(r, s),
                         "verbs": list(R.VERBS_SUB)} for s in r.subresources]
                subs += [{"subresource": s.name, "responseKind": dict(s.kind),
                          "verbs": list(s.verbs)} for s in R.specials(r)]
                if subs:
                    d["subresources"] = subs
                res.append(d)
            versions.append({"version": v, "resources": res, "freshness": "Current"})
        item = {"metadata": {"creationTimestamp": None}, "versions": versions}
        if g:
            item["metadata"]["name"] = g
        items.append(item)
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group(g: str) -> dict:
    vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in R.versions_of(g)]
    return {"name": g, "versions": vs, "preferredVersion": vs[-1]}


def api_group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g) for g in R.groups() if g]}


def api_group(g: str) -> dict | None:
    if g not in R.groups() or not g:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(g)}


def resource_list(group: str, version: str) -> dict | None:
    rs = R.resources_in(group, version)
    if not rs:
        return None
    out = []
    for r in rs:
        d = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
             "kind": r.kind, "verbs": list(R.VERBS_ALL)}
        if r.short_names:
            d["shortNames"] = list(r.short_names)
        if r.categories:
            d["categories"] = list(r.categories)
        out.append(d)
        for s in r.subresources:
            sd = {"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                  "kind": r.kind, "verbs": list(R.VERBS_SUB)}
            if s == "scale":
                sd.update(group="autoscaling", version="v1", kind="Scale")
            out.append(sd)
        out += [{"name": f"{r.plural}/{s.name}", "singularName": "", "namespaced": r.namespaced,
                 "kind": s.kind["kind"], "verbs": list(s.verbs)} for s in R.specials(r)]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}
