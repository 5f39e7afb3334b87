"""OpenAPI documents. kubectl >= 1.27 reads /openapi/v3 (root, then one document per
group-version) to find the PATCH operation of a kind (x-kubernetes-group-version-kind) and
whether the server does field validation (the fieldValidation query parameter). It computes
client-side apply patches from its compiled-in types when the schema is missing, so no
component schemas are served. kubectl 1.20 reads /openapi/v2 as protobuf; an empty protobuf
message is a valid empty openapi_v2.Document."""

from __future__ import annotations

import hashlib
import json

from . import resources as R


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _gvs() -> list[tuple[str, str]]:
    return [(g, v) for g in R.groups() for v in R.versions_of(g)]


def document(group: str, version: str) -> dict | None:
    rs = R.resources_in(group, version)
    if not rs:
        return None
    paths = {}
    for r in rs:
        base = "/" + _gv_path(group, version)
        if r.namespaced:
            base += "/namespaces/{namespace}"
        item = f"{base}/{r.plural}/{{name}}"
        params = [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query",
             "description": "fieldValidation instructs the server on how to handle objects in "
                            "the request containing unknown or duplicate fields.",
             "schema": {"type": "string", "uniqueItems": True}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}},
        ]
        if r.namespaced:
            params.insert(1, {"name": "namespace", "in": "path", "required": True,
                              "schema": {"type": "string"}})
        op = {"operationId": f"patch{r.kind}", "parameters": params,
              "x-kubernetes-action": "patch",
              "x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                  "kind": r.kind},
              "requestBody": {"content": {ct: {"schema": {"type": "object"}} for ct in (
                  "application/apply-patch+yaml", "application/json-patch+json",
                  "application/merge-patch+json", "application/strategic-merge-patch+json")},
                  "required": True},
              "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}}}
        paths[item] = {"patch": op}
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0-labtwin"},
            "paths": paths, "components": {"schemas": {}}}


def doc_hash(group: str, version: str) -> str:
    raw = json.dumps(document(group, version), sort_keys=True).encode()
    return hashlib.sha512(raw).hexdigest()[:128].upper()


def root() -> dict:
    return {"paths": {_gv_path(g, v): {"serverRelativeURL":
                                       f"/openapi/v3/{_gv_path(g, v)}?hash={doc_hash(g, v)}"}
                      for g, v in _gvs()}}


def lookup(path: str) -> dict | None:
    """path like 'api/v1' or 'apis/apps/v1' -> document."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        return document("", parts[1])
    if parts[:1] == ["apis"] and len(parts) == 3:
        return document(parts[1], parts[2])
    return None


def v2_json() -> dict:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0-labtwin"},
            "paths": {}, "definitions": {}}
