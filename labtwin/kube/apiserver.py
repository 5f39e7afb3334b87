"""The Kubernetes API twin: a subset of the Kubernetes REST API, faithful enough for the real
kubectl (1.20 and 1.37) and for the twin's controllers and kubelets.

    python -m labtwin.kube.apiserver --bind 0.0.0.0 --port 6443 --data DIR

Plain HTTP (kubeconfig `server: http://HOST:PORT`), no authentication. Objects live in
store.Store (persisted under DIR); this module maps HTTP onto it: discovery, OpenAPI, CRUD,
patch, subresources (status, scale, binding), watch streams and Table output."""

from __future__ import annotations

import argparse
import copy
import http.client
import ipaddress
import json
import logging
import random
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from . import defaults as D
from . import discovery, openapi, patch as P
from . import resources as R
from .store import (Store, StatusError, already_exists, bad_request, conflict, fields_match,
                    labels_match, not_found, now_rfc3339, parse_field_selector,
                    parse_label_selector)

log = logging.getLogger("labtwin.apiserver")

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CORE_EVENTS = R.lookup("", "v1", "events")


class _YamlLoader(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it into JSON: timestamps stay strings."""


_YamlLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(raw: bytes):
    return yaml.load(raw.decode() or "{}", Loader=_YamlLoader)


# ---------------------------------------------------------------- protobuf bodies
# kubectl >= 1.3x sends the objects of `kubectl create namespace|serviceaccount` as protobuf
# (runtime.Unknown wrapped, "k8s\\0" magic). The twin decodes the kinds whose messages are
# only metadata and simple fields, by their generated.proto field numbers; any other protobuf
# body is answered 415.

_PB_META = {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"),
            5: ("uid", "s"), 6: ("resourceVersion", "s"), 7: ("generation", "i"),
            11: ("labels", "map"), 12: ("annotations", "map"), 14: ("finalizers", "rs")}
_PB_REF = {1: ("kind", "s"), 2: ("namespace", "s"), 3: ("name", "s"), 4: ("uid", "s"),
           5: ("apiVersion", "s"), 6: ("resourceVersion", "s"), 7: ("fieldPath", "s")}
_PB_KINDS = {
    "Namespace": {1: ("metadata", _PB_META), 2: ("spec", {1: ("finalizers", "rs")})},
    "ServiceAccount": {1: ("metadata", _PB_META), 2: ("secrets", ("r", _PB_REF)),
                       3: ("imagePullSecrets", ("r", {1: ("name", "s")})),
                       4: ("automountServiceAccountToken", "b")},
}


def _pb_fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _pb_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _pb_varint(buf, i)
        elif wt == 2:
            n, i = _pb_varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield num, val


def _pb_varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def _pb_decode(buf: bytes, schema: dict) -> dict:
    out: dict = {}
    for num, val in _pb_fields(buf):
        if num not in schema:
            continue
        name, kind = schema[num]
        # gogo protobuf writes empty optional strings and zeros; JSON would omit them
        if kind == "s":
            if val:
                out[name] = val.decode()
        elif kind == "i":
            if val:
                out[name] = val
        elif kind == "b":
            out[name] = bool(val)
        elif kind == "rs":
            out.setdefault(name, []).append(val.decode())
        elif kind == "map":
            entry = dict(_pb_fields(val))
            out.setdefault(name, {})[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
        elif isinstance(kind, tuple):
            out.setdefault(name, []).append(_pb_decode(val, kind[1]))
        else:
            out[name] = _pb_decode(val, kind)
    return out


def decode_protobuf(raw: bytes) -> dict:
    if not raw.startswith(b"k8s\x00"):
        raise ValueError("no k8s protobuf magic")
    env = dict(_pb_fields(raw[4:]))
    tm = dict(_pb_fields(env.get(1, b"")))
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    if kind not in _PB_KINDS:
        raise LookupError(kind)
    obj = _pb_decode(env.get(2, b""), _PB_KINDS[kind])
    return {"apiVersion": api_version, "kind": kind, **obj}


# ---------------------------------------------------------------- events.k8s.io <-> core/v1

_EV_MAP = [("regarding", "involvedObject"), ("note", "message"),
           ("reportingController", "reportingComponent"), ("deprecatedSource", "source"),
           ("deprecatedFirstTimestamp", "firstTimestamp"),
           ("deprecatedLastTimestamp", "lastTimestamp"), ("deprecatedCount", "count")]


def _rename(obj: dict, pairs, api_version: str) -> dict:
    out = dict(obj)
    for frm, to in pairs:
        if frm in out:
            out[to] = out.pop(frm)
    out["apiVersion"], out["kind"] = api_version, "Event"
    return out


def event_to_core(obj: dict) -> dict:
    return _rename(obj, _EV_MAP, "v1")


def event_from_core(obj: dict) -> dict:
    return _rename(obj, [(old, new) for new, old in _EV_MAP], "events.k8s.io/v1")


def storage_res(res: R.Resource) -> R.Resource:
    """Both Event APIs share one storage (core/v1), as on a real server."""
    return CORE_EVENTS if res.kind == "Event" else res


def to_external(res: R.Resource, obj: dict) -> dict:
    if res.kind == "Event" and res.group == "events.k8s.io":
        return event_from_core(obj)
    obj["apiVersion"], obj["kind"] = res.api_version, res.kind
    return obj


def to_storage(res: R.Resource, obj: dict) -> dict:
    if res.kind == "Event" and res.group == "events.k8s.io":
        return event_to_core(obj)
    return obj


# ---------------------------------------------------------------- the API logic

class Api:
    """Everything the server does, independent of HTTP (used by the handler and by tests)."""

    def __init__(self, store: Store):
        self.store = store
        self.request = threading.local()  # fieldValidation mode and warnings of this request
        self._bootstrap()

    def _bootstrap(self) -> None:
        ns_res = R.lookup("", "v1", "namespaces")
        for ns in SYSTEM_NAMESPACES:
            if not self.store.try_get(ns_res, "", ns):
                self.create(ns_res, "", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": ns}}, manager="kube-apiserver")
        svc = R.lookup("", "v1", "services")
        if not self.store.try_get(svc, "default", "kubernetes"):
            self.create(svc, "default", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "labels": {
                    "component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": str(SERVICE_CIDR.network_address + 1),
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                    "targetPort": 6443}]}}, manager="kube-apiserver")

    # ---- helpers
    def _check_namespace(self, res: R.Resource, ns: str) -> None:
        if not res.namespaced:
            return
        nsobj = self.store.try_get(R.lookup("", "v1", "namespaces"), "", ns)
        if nsobj is None:
            raise StatusError(404, "NotFound", f'namespaces "{ns}" not found',
                              {"name": ns, "kind": "namespaces"})
        if nsobj["metadata"].get("deletionTimestamp"):
            raise StatusError(403, "Forbidden", f"{res.plural} \"...\" is forbidden: unable to "
                              f"create new content in namespace {ns} because it is being "
                              "terminated")

    def _allocate_cluster_ip(self) -> str:
        used = {o.get("spec", {}).get("clusterIP")
                for o in self.store.all_objects(R.lookup("", "v1", "services"))}
        for host in SERVICE_CIDR.hosts():
            if int(host) - int(SERVICE_CIDR.network_address) < 10:
                continue
            if str(host) not in used:
                return str(host)
        raise StatusError(500, "InternalError", "range is full")

    @staticmethod
    def _canonicalize(sres: R.Resource, obj: dict) -> None:
        try:
            D.canonicalize_quantities(sres.kind, obj)
        except ValueError as e:
            raise bad_request(f'{sres.kind} in version "{sres.version}" cannot be handled as a '
                              f'{sres.kind}: {e}')

    def _admit_create(self, sres: R.Resource, obj: dict) -> None:
        """What admission plugins and allocators add on create: protection finalizers, the
        default StorageClass of a claim that names none, a Service's cluster IP and node
        ports."""
        D.add_protection_finalizers(sres, obj)
        spec = obj.get("spec") or {}
        if sres.kind == "PersistentVolumeClaim" and "storageClassName" not in spec:
            for sc in self.store.all_objects(R.lookup("storage.k8s.io", "v1", "storageclasses")):
                if (sc["metadata"].get("annotations") or {}).get(
                        "storageclass.kubernetes.io/is-default-class") == "true":
                    spec["storageClassName"] = sc["metadata"]["name"]
                    break
        if sres.kind == "Service":
            if spec.get("clusterIP") in (None, ""):
                spec["clusterIP"] = self._allocate_cluster_ip()
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                used = {p.get("nodePort") for o in self.store.all_objects(sres)
                        for p in o.get("spec", {}).get("ports") or []}
                free = (n for n in range(30000, 32768) if n not in used)
                for p in spec.get("ports") or []:
                    if not p.get("nodePort"):
                        p["nodePort"] = next(free)

    def _prepare_create(self, res: R.Resource, ns: str, obj: dict) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("Object 'Kind' is missing in the request body")
        obj = to_storage(res, copy.deepcopy(obj))
        sres = storage_res(res)
        want = sres.api_version
        if obj.get("apiVersion") and obj["apiVersion"] != want:
            raise bad_request(f"the API version in the data ({obj['apiVersion']}) does not "
                              f"match the expected API version ({want})")
        if obj.get("kind") and obj["kind"] != sres.kind:
            raise bad_request(f"the kind in the data ({obj['kind']}) does not match the "
                              f"expected kind ({sres.kind})")
        obj["apiVersion"], obj["kind"] = want, sres.kind
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if res.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(
                random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation", "selfLink"):
            md.pop(k, None)
        return obj

    def _finish(self, sres: R.Resource, obj: dict, old: dict | None) -> None:
        """Defaulting, status handling, validation, generation: shared by create and update."""
        mode = getattr(self.request, "field_validation", "Warn")
        unknown = D.unknown_fields(sres.kind, obj, drop=mode != "Strict")
        if unknown and mode == "Strict":
            raise bad_request(f'{sres.kind} in version "{sres.version}" cannot be handled as a '
                              f'{sres.kind}: strict decoding error: ' +
                              ", ".join(f'unknown field "{u}"' for u in unknown))
        if unknown and mode == "Warn":
            self.request.warnings = [f'unknown field "{u}"' for u in unknown]
        self._canonicalize(sres, obj)
        if old is None or D.warnings(sres.kind, old) != D.warnings(sres.kind, obj):
            self.request.warnings = (getattr(self.request, "warnings", None) or []) + \
                D.warnings(sres.kind, obj)
        if old is None and sres.kind in D.STATUS_RESET_ON_CREATE:
            obj.pop("status", None)
        D.default(sres, obj)
        D.validate(sres, obj, old)
        md = obj["metadata"]
        if sres.kind in D.WITH_GENERATION:
            if old is None:
                md["generation"] = 1
            else:
                md["generation"] = old["metadata"].get("generation", 1)
                if obj.get("spec") != old.get("spec"):
                    md["generation"] += 1

    def create(self, res: R.Resource, ns: str, body: dict, manager: str,
               dry_run: bool = False) -> dict:
        sres = storage_res(res)
        obj = self._prepare_create(res, ns, body)
        with self.store.lock:
            self._check_namespace(sres, ns)
            self._finish(sres, obj, None)
            self._admit_create(sres, obj)
            obj["metadata"].pop("managedFields", None)
            P.record_update(None, obj, manager, res.api_version)
            if dry_run:
                if self.store.try_get(sres, ns, obj["metadata"]["name"]):
                    raise already_exists(res, obj["metadata"]["name"])
                return to_external(res, obj)
            out = self.store.create(sres, obj)
            if sres.kind == "Namespace":
                self._ensure_default_sa(out["metadata"]["name"])
        return to_external(res, out)

    def _ensure_default_sa(self, ns: str) -> None:
        """What the serviceaccount controller does for every namespace."""
        sa = R.lookup("", "v1", "serviceaccounts")
        if not self.store.try_get(sa, ns, "default"):
            self.create(sa, ns, {"metadata": {"name": "default"}},
                        manager="kube-controller-manager")

    def get(self, res: R.Resource, ns: str, name: str) -> dict:
        return to_external(res, self.store.get(storage_res(res), ns, name))

    def list(self, res: R.Resource, ns: str | None, label_sel: str = "",
             field_sel: str = "", deep: bool = True) -> tuple[list[dict], int]:
        pred = self.predicate(res, label_sel, field_sel)
        items, rv = self.store.list(storage_res(res), ns, pred, deep)
        return [to_external(res, o) for o in items], rv

    def predicate(self, res: R.Resource, label_sel: str, field_sel: str):
        lreqs = parse_label_selector(label_sel) if label_sel else []
        freqs = parse_field_selector(field_sel, res.kind) if field_sel else []

        def pred(o: dict) -> bool:
            return labels_match(lreqs, o.get("metadata", {}).get("labels")) and \
                fields_match(freqs, o)
        return pred

    def replace(self, res: R.Resource, ns: str, name: str, body: dict, manager: str,
                subresource: str = "", dry_run: bool = False, old: dict | None = None,
                managed_fields: list | None = None) -> dict:
        """PUT (and the tail of every patch): old is the stored object if already read."""
        sres = storage_res(res)
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        with self.store.lock:
            if old is None:
                old = self.store.get(sres, ns, name)
            obj = to_storage(res, copy.deepcopy(body))
            obj["apiVersion"], obj["kind"] = sres.api_version, sres.kind
            md = obj.setdefault("metadata", {})
            if md.get("name") and md["name"] != name:
                raise bad_request(f'the name of the object ({md["name"]}) does not match the '
                                  f'name on the URL ({name})')
            md["name"] = name
            if res.namespaced:
                if md.get("namespace") and md["namespace"] != ns:
                    raise bad_request("the namespace of the provided object does not match "
                                      "the namespace sent on the request")
                md["namespace"] = ns
            expect_rv = md.get("resourceVersion") or None
            if subresource == "status":
                # status writes change status only (metav1.ResetObjectMetaForStatus + spec)
                new = copy.deepcopy(old)
                new["status"] = obj.get("status", {})
                obj = new
                self._canonicalize(sres, obj)
            elif "status" in sres.subresources:
                # writes to the main resource never change status
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            for k in ("uid", "creationTimestamp"):
                md[k] = old["metadata"].get(k)
            if sres.kind == "Service":
                # allocated values an update leaves out are kept (patchAllocatedValues)
                if obj.get("spec", {}).get("clusterIP") in (None, ""):
                    obj.setdefault("spec", {})["clusterIP"] = old["spec"].get("clusterIP")
                    obj["spec"]["clusterIPs"] = old["spec"].get("clusterIPs")
                olds = {p.get("port"): p.get("nodePort") for p in old["spec"].get("ports") or []}
                for p in obj["spec"].get("ports") or []:
                    if not p.get("nodePort") and olds.get(p.get("port")) and \
                            obj["spec"].get("type") in ("NodePort", "LoadBalancer"):
                        p["nodePort"] = olds[p.get("port")]
            if subresource != "status":
                self._finish(sres, obj, old)
            if managed_fields is not None:  # server-side apply computed the ownership
                obj["metadata"]["managedFields"] = managed_fields
            else:
                # a client may rewrite managedFields (kubectl does when it moves ownership from
                # client-side to server-side apply); left out, the stored ones stay
                given = (body.get("metadata") or {}).get("managedFields")
                if given is None or subresource:
                    given = copy.deepcopy(old["metadata"].get("managedFields") or [])
                obj["metadata"]["managedFields"] = given
                P.record_update(old, obj, manager, res.api_version, subresource)
            if dry_run:  # checked like a write (409 on a stale version), stored nowhere
                if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                    raise conflict(res, name)
                obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                return to_external(res, obj)
            out = self.store.update(sres, obj, expect_rv)
        return to_external(res, out)

    def patch(self, res: R.Resource, ns: str, name: str, ctype: str, raw: bytes, manager: str,
              force: bool = False, subresource: str = "", dry_run: bool = False) -> dict:
        sres = storage_res(res)
        ctype = ctype.split(";")[0].strip()
        try:
            if ctype == "application/apply-patch+yaml":
                body = load_yaml(raw)
            else:
                body = json.loads(raw.decode() or "null")
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"error decoding patch: {e}")
        with self.store.lock:
            old = self.store.try_get(sres, ns, name)
            if old is None:
                if ctype == "application/apply-patch+yaml" and not subresource:
                    return self._apply_create(res, ns, name, body, manager, force, dry_run)
                raise not_found(res, name)
            cur = to_external(res, copy.deepcopy(old))
            try:
                if ctype == "application/json-patch+json":
                    new = P.json_patch(cur, body)
                elif ctype == "application/merge-patch+json":
                    new = P.merge_patch(cur, body)
                elif ctype == "application/strategic-merge-patch+json":
                    if not isinstance(body, dict):
                        raise P.PatchError("patch must be an object", 400)
                    new = P.strategic_merge_patch(cur, body)
                elif ctype == "application/apply-patch+yaml":
                    if not isinstance(body, dict):
                        raise P.PatchError("apply patch must be an object", 400)
                    self._check_apply_body(res, ns, name, body)
                    new = P.server_side_apply(cur, body, manager, force, res.api_version)
                else:
                    raise StatusError(415, "UnsupportedMediaType",
                                      f'the body of the request was in an unknown format - '
                                      f'accepted media types include: application/json-patch+'
                                      f'json, application/merge-patch+json, application/'
                                      f'apply-patch+yaml, application/strategic-merge-patch+json')
            except P.PatchError as e:
                if e.code == 409:
                    raise StatusError(409, "Conflict", e.args[0])
                raise StatusError(e.code, "Invalid" if e.code == 422 else "BadRequest",
                                  e.args[0])
            if not isinstance(new, dict):
                raise bad_request("patch result is not an object")
            # a patch only asks for optimistic locking if it carries a resourceVersion
            if new.get("metadata", {}).get("resourceVersion") == old["metadata"].get(
                    "resourceVersion"):
                new["metadata"].pop("resourceVersion", None)
            mf = None
            if ctype == "application/apply-patch+yaml":
                mf = new["metadata"].pop("managedFields", [])
            return self.replace(res, ns, name, new, manager, subresource, dry_run, old=old,
                                managed_fields=mf)

    def _check_apply_body(self, res: R.Resource, ns: str, name: str, body: dict) -> None:
        want = res.api_version
        if body.get("apiVersion") != want or body.get("kind") != res.kind:
            raise bad_request(f"the API version in the data ({body.get('apiVersion')}) does not "
                              f"match the expected API version ({want})"
                              if body.get("apiVersion") != want else
                              f"the kind in the data ({body.get('kind')}) does not match the "
                              f"expected kind ({res.kind})")
        md = body.get("metadata") or {}
        if md.get("name") and md["name"] != name:
            raise bad_request(f"the name of the object ({md['name']}) does not match the name "
                              f"on the URL ({name})")

    def _apply_create(self, res, ns, name, body, manager, force, dry_run) -> dict:
        if not isinstance(body, dict):
            raise bad_request("apply patch must be an object")
        self._check_apply_body(res, ns, name, body)
        obj = P.server_side_apply(None, body, manager, force, res.api_version)
        obj.setdefault("metadata", {})["name"] = name
        mf = obj["metadata"]["managedFields"]
        sres = storage_res(res)
        prepared = self._prepare_create(res, ns, obj)
        prepared["metadata"]["managedFields"] = mf
        with self.store.lock:
            self._check_namespace(sres, ns)
            self._finish(sres, prepared, None)
            self._admit_create(sres, prepared)
            if dry_run:
                return to_external(res, prepared)
            out = self.store.create(sres, prepared)
            if sres.kind == "Namespace":
                self._ensure_default_sa(name)
        return to_external(res, out)

    def delete(self, res: R.Resource, ns: str, name: str, opts: dict,
               dry_run: bool = False) -> dict:
        """DELETE as the generic registry does it: objects with finalizers (or a grace period:
        scheduled pods) get deletionTimestamp and go when the last finalizer is removed with no
        grace left; Foreground/Orphan propagation adds its finalizer for the garbage
        collector."""
        sres = storage_res(res)
        pre = opts.get("preconditions") or {}
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        grace = opts.get("gracePeriodSeconds")
        with self.store.lock:
            cur = self.store.get(sres, ns, name)
            md = cur["metadata"]
            if pre.get("uid") and pre["uid"] != md["uid"]:
                raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on '
                                  f'{res.plural} "{name}": Precondition failed: UID in '
                                  f'precondition: {pre["uid"]}, UID in object meta: {md["uid"]}')
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise conflict(res, name)
            if dry_run:
                return to_external(res, cur)
            if sres.kind == "Namespace":
                if md.get("deletionTimestamp"):
                    self.sweep_namespaces()
                    return to_external(res, cur)
                return to_external(res, self._delete_namespace(cur))
            if md.get("deletionTimestamp"):
                # already terminating: a shorter grace period (the kubelet's 0) is recorded
                g_now = md.get("deletionGracePeriodSeconds") or 0
                if grace is not None and grace < g_now:
                    new = copy.deepcopy(cur)
                    new["metadata"]["deletionGracePeriodSeconds"] = grace
                    if not new["metadata"].get("finalizers") and grace == 0:
                        out, _ = self.store.delete(sres, ns, name)
                        return to_external(res, out)
                    return to_external(res, self.store.write_marked(sres, ns, name, new, cur))
                return to_external(res, cur)
            if sres.kind == "Pod":
                terminal = cur.get("status", {}).get("phase") in ("Succeeded", "Failed")
                g = grace if grace is not None else \
                    cur.get("spec", {}).get("terminationGracePeriodSeconds", 30)
                if not cur.get("spec", {}).get("nodeName") or terminal:
                    g = 0  # nothing runs it: no kubelet will finish it
            else:
                g = 0
            fins = list(md.get("finalizers") or [])
            for f in {"Foreground": ["foregroundDeletion"], "Orphan": ["orphan"]}.get(
                    policy, []):
                if f not in fins:
                    fins.append(f)
            if not fins and g == 0:
                out, _ = self.store.delete(sres, ns, name)
                return to_external(res, out)
            new = copy.deepcopy(cur)
            if fins:
                new["metadata"]["finalizers"] = fins
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = g
            if sres.kind in D.WITH_GENERATION:
                new["metadata"]["generation"] = md.get("generation", 1) + 1
            return to_external(res, self.store.write_marked(sres, ns, name, new, cur))

    def _delete_namespace(self, nsobj: dict) -> dict:
        """The namespace controller's work, done at once: delete every object in it; the
        namespace goes when nothing is left (objects with finalizers keep it Terminating)."""
        name = nsobj["metadata"]["name"]
        for r in R.RESOURCES:
            if not r.namespaced or r is not storage_res(r):
                continue
            for o in self.store.list(r, name)[0]:
                try:
                    self.delete(r, name, o["metadata"]["name"], {})
                except StatusError:
                    pass
        ns_res = R.lookup("", "v1", "namespaces")
        marked = copy.deepcopy(nsobj)
        marked["metadata"]["deletionTimestamp"] = now_rfc3339()
        marked["status"] = {"phase": "Terminating"}
        if self._namespace_empty(name):
            out, _ = self.store.delete(ns_res, "", name)
            out["status"] = {"phase": "Terminating"}
            return out
        # held by spec.finalizers until its content is gone (sweep_namespaces)
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        return self.store.write_marked(ns_res, "", name, marked, nsobj)

    def _namespace_empty(self, name: str) -> bool:
        return not any(self.store.list(r, name)[0] for r in R.RESOURCES
                       if r.namespaced and r is storage_res(r))

    def sweep_namespaces(self) -> None:
        ns_res = R.lookup("", "v1", "namespaces")
        for o in self.store.list(ns_res, None)[0]:
            if o["metadata"].get("deletionTimestamp") and \
                    self._namespace_empty(o["metadata"]["name"]):
                try:
                    self.store.delete(ns_res, "", o["metadata"]["name"])
                except StatusError:
                    pass

    # ---- subresources
    def get_scale(self, res: R.Resource, ns: str, name: str) -> dict:
        obj = self.store.get(res, ns, name)
        return self._scale_of(obj)

    @staticmethod
    def _scale_of(obj: dict) -> dict:
        md = obj["metadata"]
        sel = obj.get("spec", {}).get("selector")
        sel_text = ",".join(
            f"{k}={v}" for k, v in sorted((sel or {}).get("matchLabels", {}).items()))
        st = {"replicas": obj.get("status", {}).get("replicas", 0)}
        if sel_text:
            st["selector"] = sel_text
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                "creationTimestamp") if k in md},
                "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)}, "status": st}

    def update_scale(self, res: R.Resource, ns: str, name: str, scale_fn, manager: str) -> dict:
        with self.store.lock:
            old = self.store.get(res, ns, name)
            scale = scale_fn(self._scale_of(old))
            if not isinstance(scale, dict):
                raise bad_request("invalid Scale")
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise D.invalid_error(R.lookup("autoscaling", "v1", "scale") or res, name,
                                      [("FieldValueInvalid", "spec.replicas",
                                        f"Invalid value: {replicas}: must be greater than or "
                                        "equal to 0")])
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            new = copy.deepcopy(old)
            new["spec"]["replicas"] = replicas
            new["metadata"].pop("resourceVersion", None)
            out = self.replace(res, ns, name, new, manager, old=old)
            return self._scale_of(out)

    def bind(self, ns: str, name: str, binding: dict) -> dict:
        pods = R.lookup("", "v1", "pods")
        target = (binding or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise D.invalid_error(pods, name, [("FieldValueRequired", "target.name",
                                                "Required value")])
        with self.store.lock:
            pod = self.store.get(pods, ns, name)
            if pod["spec"].get("nodeName"):
                raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on '
                                  f'pods/binding "{name}": pod {name} is already assigned to '
                                  f'node "{pod["spec"]["nodeName"]}"')
            if pod["metadata"].get("deletionTimestamp"):
                raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on '
                                  f'pods/binding "{name}": pod {name} is being deleted, cannot '
                                  'be assigned to a host')
            pod["spec"]["nodeName"] = node
            conds = [c for c in pod.get("status", {}).get("conditions") or []
                     if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            pod.setdefault("status", {})["conditions"] = conds
            self.store.update(pods, pod)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # ---- tables
    @staticmethod
    def table(res: R.Resource, items: list[dict], rv: int | str, include: str,
              columns: bool = True) -> dict:
        now = time.time()
        rows = []
        for o in items:
            cells = res.cells(o, now)[:len(res.columns)]
            row = {"cells": cells}
            if include == "Object":
                row["object"] = o
            elif include != "None":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": o.get("metadata", {})}
            rows.append(row)
        t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
             "metadata": {"resourceVersion": str(rv)}, "rows": rows}
        if columns:
            t["columnDefinitions"] = [
                {"name": c.name, "type": c.type, "format": c.format,
                 "description": c.description, "priority": c.priority} for c in res.columns]
        else:
            t["columnDefinitions"] = None
        return t


# ---------------------------------------------------------------- pods/log
# The real path: pod.LogLocation (registry/core/pod/strategy.go) picks the container and the
# node's kubelet; the kubelet refuses a container that has not run yet
# (validateContainerLogStatus, kubelet_pods.go); GenericHttpResponseChecker maps its answer.

PODS = R.lookup("", "v1", "pods")
NODES = R.lookup("", "v1", "nodes")
_LOG_INTS = ("sinceSeconds", "tailLines", "limitBytes")


def _qbool(v: str | None) -> bool:
    """Convert_Slice_string_To_bool: absent is false; "0" and "false" are false; else true."""
    return v is not None and v != "0" and v.lower() != "false"


def pod_log_options(name: str, q: dict) -> dict:
    """PodLogOptions from the query, validated as ValidatePodLogOptions does; returns the
    kubelet's query (sinceTime becomes sinceSeconds: the twin's kubelet reads only that)."""
    out: dict[str, str] = {}
    for k in ("follow", "previous", "timestamps"):
        if _qbool(q.get(k)):
            out[k] = "true"
    nums = {}
    for k in _LOG_INTS:
        if k in q:
            try:
                nums[k] = int(q[k])
            except ValueError:
                raise bad_request(f'strconv.ParseInt: parsing "{q[k]}": invalid syntax')
    errs = []
    if nums.get("tailLines", 0) < 0:
        errs.append(("FieldValueInvalid", "tailLines", f"Invalid value: {nums['tailLines']}: "
                     "must be greater than or equal to 0"))
    if "limitBytes" in nums and nums["limitBytes"] < 1:
        errs.append(("FieldValueInvalid", "limitBytes", f"Invalid value: {nums['limitBytes']}: "
                     "must be greater than 0"))
    if "sinceSeconds" in nums and q.get("sinceTime"):
        errs.append(("FieldValueForbidden", "", "Forbidden: at most one of `sinceTime` or "
                     "`sinceSeconds` may be specified"))
    elif nums.get("sinceSeconds", 1) < 1:
        errs.append(("FieldValueInvalid", "sinceSeconds", f"Invalid value: "
                     f"{nums['sinceSeconds']}: must be greater than 0"))
    if errs:
        raise D.invalid_error(LOG_OPTIONS, name, errs)
    if q.get("sinceTime"):
        t = R.parse_time(q["sinceTime"])
        if t is None:
            raise bad_request(f'parsing time "{q["sinceTime"]}" as "2006-01-02T15:04:05Z07:00":'
                              ' cannot parse')
        nums["sinceSeconds"] = max(1, int(time.time() - t + 0.999))
    out.update({k: str(v) for k, v in nums.items()})
    return out


LOG_OPTIONS = R.Resource("", "v1", "PodLogOptions", "", "", True)


def log_container(pod: dict, container: str) -> str:
    """validateContainer of LogLocation: the only container by default, else name one."""
    spec, name = pod.get("spec", {}), pod["metadata"]["name"]
    names = lambda key: [c.get("name", "") for c in spec.get(key) or []]  # noqa: E731
    if container:
        if container not in names("containers") + names("initContainers") + \
                names("ephemeralContainers"):
            raise bad_request(f"container {container} is not valid for pod {name}")
        return container
    main = names("containers")
    if len(main) == 1:
        return main[0]
    if not main:
        raise bad_request(f"a container name must be specified for pod {name}")
    msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(main)}]"
    if names("initContainers"):
        msg += f" or one of the init containers: [{' '.join(names('initContainers'))}]"
    if names("ephemeralContainers"):
        msg += f" or one of the ephemeral containers: [{' '.join(names('ephemeralContainers'))}]"
    raise bad_request(msg)


def log_container_status(pod: dict, container: str, previous: bool) -> None:
    """The kubelet's validateContainerLogStatus on the status it reports: a container that has
    no run to show is refused with 400 and the kubelet's words."""
    name, st = pod["metadata"]["name"], pod.get("status") or {}
    statuses = (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []) + \
        (st.get("ephemeralContainerStatuses") or [])
    cs = next((c for c in statuses if c.get("name") == container), None)
    if cs is None:  # the kubelet has not reported yet: its own view is a container being created
        cs = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    last = (cs.get("lastState") or {}).get("terminated")
    state = cs.get("state") or {}
    who = f'container "{container}" in pod "{name}"'
    if previous:
        if not last or not last.get("containerID"):
            raise bad_request(f'previous terminated {who} not found')
        return
    if "running" in state:
        return
    if "terminated" in state:
        if state["terminated"].get("containerID") or (last and last.get("containerID")):
            return
        raise bad_request(f"{who} is terminated")
    if last:
        if last.get("containerID"):
            return
        raise bad_request(f"{who} is terminated")
    if "waiting" in state:
        reason = state["waiting"].get("reason", "")
        if reason == "ErrImagePull":
            raise bad_request(f"{who} is waiting to start: image can't be pulled")
        if reason == "ImagePullBackOff":
            raise bad_request(f"{who} is waiting to start: trying and failing to pull image")
        raise bad_request(f"{who} is waiting to start: {reason}")
    raise bad_request(f"{who} is waiting to start - no logs yet")


def kubelet_endpoint(node: dict) -> tuple[str, int]:
    """The node's InternalIP and the kubelet port it reports (10250 when it reports none)."""
    st = node.get("status") or {}
    addrs = [a.get("address") for a in st.get("addresses") or [] if a.get("type") == "InternalIP"]
    if not addrs:
        raise StatusError(500, "", f'no preferred addresses found; known addresses: '
                          f'{st.get("addresses") or []}')
    try:
        ip = str(ipaddress.ip_address(addrs[0]))  # only an address goes into the URL
    except ValueError:
        raise StatusError(500, "", f"node {node['metadata']['name']}: InternalIP "
                          f"{addrs[0]!r} is not an IP address")
    port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
    return ip, int(port)


def kubelet_error(code: int, body: str, name: str) -> StatusError:
    """GenericHttpResponseChecker: 400 -> BadRequest, 500 -> InternalError, else the code with
    the kubelet's text."""
    body = body.strip()
    if code == 400:
        return bad_request(body)
    if code == 500:
        return StatusError(500, "InternalError", f"Internal error occurred: {body}")
    if code == 404:
        return StatusError(404, "NotFound", "the server could not find the requested resource "
                           f"( pods/log {name})",
                           {"name": name, "kind": "pods/log",
                            "causes": [{"reason": "UnexpectedServerResponse", "message": body}]})
    return StatusError(code, "InternalError" if code >= 500 else "",
                       f"an error on the server ({json.dumps(body)}) has prevented the request "
                       f"from succeeding ( pods/log {name})")


# ---------------------------------------------------------------- HTTP

def manager_from(query: dict, ua: str) -> str:
    fm = query.get("fieldManager")
    if fm:
        return fm
    return (ua or "unknown").split("/")[0] or "unknown"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "labtwin-apiserver"
    api: Api = None  # set by make_server

    def setup(self):
        super().setup()
        # headers and body go out as separate writes: without NODELAY, Nagle + delayed ACK
        # cost 40 ms per small response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # requests go to the logger at debug level
        log.debug("%s %s", self.address_string(), fmt % args)

    # ---- plumbing
    def _send(self, code: int, body, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else \
            json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        for w in getattr(self.api.request, "warnings", None) or []:
            self.send_header("Warning", '299 - ' + json.dumps(w))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, e: StatusError) -> None:
        self._send(e.code, e.status())

    def _body(self) -> bytes:
        """The request body, read once (_dispatch reads it before routing: an error answered
        without reading it would leave it in the stream as the next 'request')."""
        if getattr(self, "_raw_body", None) is not None:
            return self._raw_body
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(n) if n else b""

    def _json_body(self) -> dict:
        raw = self._body()
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return decode_protobuf(raw)
            except (LookupError, ValueError, IndexError):
                pass
        if ctype not in ("application/json", "application/yaml", "*/*", ""):
            # protobuf of other kinds (and CBOR) needs the Go schemas: refuse with 415
            raise StatusError(415, "UnsupportedMediaType", f'the body of the request was in an '
                              f'unknown format - accepted media types include: '
                              f'application/json, application/yaml')
        try:
            if "yaml" in ctype:
                return load_yaml(raw)
            return json.loads(raw.decode() or "{}")
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"the body of the request could not be decoded: {e}")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True)
             .items()}
        path = url.path.rstrip("/") or "/"
        self.api.request.field_validation = q.get("fieldValidation", "Warn")
        self.api.request.warnings = []
        self._raw_body = None
        try:
            self._raw_body = self._body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            self._route(method, path, q)
        except StatusError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # a bug here must not kill the connection thread silently
            log.exception("internal error on %s %s", method, self.path)
            try:
                self._error(StatusError(500, "InternalError", f"Internal error occurred: {e}"))
            except OSError:
                pass

    # ---- routes
    def _route(self, method: str, path: str, q: dict) -> None:
        accept = self.headers.get("Accept") or ""
        if path in ("/healthz", "/readyz", "/livez") or path.startswith(
                ("/healthz/", "/readyz/", "/livez/")):
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return self._send(200, discovery.SERVER_VERSION)
        if path in ("/api", "/apis"):
            if method != "GET":
                raise StatusError(405, "MethodNotAllowed", "the server does not allow this "
                                  "method on the requested resource")
            agg = self._aggregated_version(accept)
            if agg:
                return self._send(200, discovery.aggregated(path == "/api", agg),
                                  f"application/json;g=apidiscovery.k8s.io;v={agg};"
                                  "as=APIGroupDiscoveryList")
            if path == "/api":
                host = self.headers.get("Host") or "127.0.0.1:6443"
                return self._send(200, discovery.api_versions(host))
            return self._send(200, discovery.api_group_list())
        if path == "/openapi/v3":
            return self._send(200, openapi.root())
        if path.startswith("/openapi/v3/"):
            doc = openapi.lookup(path[len("/openapi/v3/"):])
            if doc is None:
                raise StatusError(404, "NotFound", "the server could not find the requested "
                                  "resource")
            return self._send(200, doc)
        if path == "/openapi/v2":
            if "protobuf" in accept:
                # empty openapi_v2.Document message: valid, no definitions
                return self._send(200, b"", "application/com.github.proto-openapi.spec.v2"
                                  ".v1.0+protobuf")
            return self._send(200, openapi.v2_json())
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                g = discovery.api_group(parts[1])
                if g is None:
                    raise StatusError(404, "NotFound", "the server could not find the "
                                      "requested resource")
                return self._send(200, g)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise StatusError(404, "NotFound", "the server could not find the requested "
                              "resource")
        if not rest:
            rl = discovery.resource_list(group, version)
            if rl is None:
                raise StatusError(404, "NotFound", "the server could not find the requested "
                                  "resource")
            return self._send(200, rl)
        self._resource(method, group, version, rest, q, accept)

    @staticmethod
    def _aggregated_version(accept: str) -> str | None:
        for item in accept.split(","):
            params = dict(p.strip().split("=", 1) for p in item.split(";")[1:] if "=" in p)
            if params.get("g") == "apidiscovery.k8s.io" and \
                    params.get("as") == "APIGroupDiscoveryList" and \
                    params.get("v") in ("v2", "v2beta1"):
                return params["v"]
        return None

    def _resource(self, method, group, version, rest, q, accept) -> None:
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and R.lookup(group, version, rest[2]) \
                and R.lookup(group, version, rest[2]).namespaced:
            ns, rest = rest[1], rest[2:]
        if rest[0] == "watch":  # deprecated /watch/ paths
            q = dict(q, watch="true")
            rest = rest[1:]
            if rest and rest[0] == "namespaces" and len(rest) >= 3:
                ns, rest = rest[1], rest[2:]
        res = R.lookup(group, version, rest[0])
        if res is None or len(rest) > 3:
            raise StatusError(404, "NotFound", "the server could not find the requested "
                              "resource")
        if res.namespaced and ns is None and len(rest) > 1:
            raise StatusError(404, "NotFound", "the server could not find the requested "
                              "resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in res.subresources and sub not in {s.name for s in R.specials(res)}:
            raise StatusError(404, "NotFound", "the server could not find the requested "
                              "resource")
        ns = ns or ""
        api = self.api
        manager = manager_from(q, self.headers.get("User-Agent", ""))
        dry = q.get("dryRun") == "All"
        if name is None:
            if method == "GET":
                if q.get("watch") in ("true", "1"):
                    return self._watch(res, ns if res.namespaced and ns else None, q, accept)
                items, rv = api.list(res, ns if ns else None, q.get("labelSelector", ""),
                                     q.get("fieldSelector", ""), deep=False)
                return self._send_list(res, items, rv, q, accept)
            if method == "POST":
                body = self._json_body()
                out = api.create(res, ns, body, manager, dry)
                return self._send(201, out)
            if method == "DELETE":
                return self._delete_collection(res, ns, q)
            raise StatusError(405, "MethodNotAllowed", "the server does not allow this method "
                              "on the requested resource")
        if method == "GET" and q.get("watch") in ("true", "1"):
            q = dict(q, fieldSelector=f"metadata.name={name}")
            return self._watch(res, ns if res.namespaced else None, q, accept)
        if sub == "scale":
            return self._scale(method, res, ns, name, manager)
        if sub == "log":
            if method != "GET":
                raise StatusError(405, "MethodNotAllowed", "the server does not allow this "
                                  "method on the requested resource")
            return self._pod_log(ns, name, q)
        if sub == "binding":
            if method != "POST":
                raise StatusError(405, "MethodNotAllowed", "the server does not allow this "
                                  "method on the requested resource")
            return self._send(201, api.bind(ns, name, self._json_body()))
        if method == "GET":
            obj = api.get(res, ns, name)
            if "as=Table" in accept:
                return self._send(200, api.table(res, [obj], obj["metadata"]["resourceVersion"],
                                                 q.get("includeObject", "Metadata")))
            return self._send(200, obj)
        if method == "PUT":
            return self._send(200, api.replace(res, ns, name, self._json_body(), manager, sub,
                                               dry))
        if method == "PATCH":
            ctype = self.headers.get("Content-Type") or ""
            out = self.api.patch(res, ns, name, ctype, self._body(), manager,
                                 q.get("force") == "true", sub, dry)
            return self._send(200, out)
        if method == "DELETE":
            raw = self._body()
            opts = json.loads(raw.decode()) if raw.strip() else {}
            if "propagationPolicy" in q:
                opts["propagationPolicy"] = q["propagationPolicy"]
            if "gracePeriodSeconds" in q:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            out = api.delete(res, ns, name, opts, dry)
            return self._send(200, out)
        raise StatusError(405, "MethodNotAllowed", "the server does not allow this method on "
                          "the requested resource")

    def _delete_collection(self, res, ns, q) -> None:
        items, rv = self.api.list(res, ns or None, q.get("labelSelector", ""),
                                  q.get("fieldSelector", ""))
        opts = {}
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        out = []
        for o in items:
            try:
                out.append(self.api.delete(res, o["metadata"].get("namespace", ""),
                                           o["metadata"]["name"], opts))
            except StatusError:
                pass
        return self._send(200, self._list_body(res, out, self.api.store.rv))

    def _scale(self, method, res, ns, name, manager) -> None:
        if res.kind not in ("StatefulSet", "Deployment", "ReplicaSet"):
            raise StatusError(404, "NotFound", "the server could not find the requested "
                              "resource")
        if method == "GET":
            return self._send(200, self.api.get_scale(res, ns, name))
        if method == "PUT":
            body = self._json_body()
            return self._send(200, self.api.update_scale(res, ns, name, lambda s: body,
                                                         manager))
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            raw = self._body()
            try:
                body = json.loads(raw.decode() or "null")
            except ValueError as e:
                raise bad_request(f"error decoding patch: {e}")

            def fn(scale):
                try:
                    if ctype == "application/json-patch+json":
                        return P.json_patch(scale, body)
                    if ctype == "application/merge-patch+json":
                        return P.merge_patch(scale, body)
                    return P.strategic_merge_patch(scale, body)
                except P.PatchError as e:
                    raise StatusError(e.code, "Invalid", e.args[0])
            return self._send(200, self.api.update_scale(res, ns, name, fn, manager))
        raise StatusError(405, "MethodNotAllowed", "the server does not allow this method on "
                          "the requested resource")

    @staticmethod
    def _list_body(res: R.Resource, items: list[dict], rv) -> dict:
        for o in items:  # list items carry no kind/apiVersion, as on a real server
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    def _send_list(self, res, items, rv, q, accept) -> None:
        if "as=Table" in accept:
            return self._send(200, self.api.table(res, items, rv,
                                                  q.get("includeObject", "Metadata")))
        return self._send(200, self._list_body(res, items, rv))

    # ---- pods/log: proxied to the kubelet of the pod's node, as the real apiserver does
    def _pod_log(self, ns: str, name: str, q: dict) -> None:
        pod = self.api.get(PODS, ns, name)
        opts = pod_log_options(name, q)
        container = log_container(pod, q.get("container", ""))
        node_name = pod.get("spec", {}).get("nodeName")
        if not node_name:
            # LogLocation: a pod not yet assigned a host has no location, the stream is empty
            return self._send(200, b"", "text/plain")
        log_container_status(pod, container, opts.get("previous") == "true")
        host, port = kubelet_endpoint(self.api.get(NODES, "", node_name))
        path = "/containerLogs/" + "/".join(urllib.parse.quote(p, safe="")
                                            for p in (ns, name, container))
        target = f"{path}?{urllib.parse.urlencode(opts)}" if opts else path
        follow = opts.get("follow") == "true"
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            try:
                conn.request("GET", target)
                conn.sock.settimeout(None if follow else 60)
                resp = conn.getresponse()
            except OSError as e:  # what Go's client says, as a 500 without a reason
                raise StatusError(500, "", f'Get "http://{host}:{port}{target}": {e}')
            if not 200 <= resp.status <= 206:
                raise kubelet_error(resp.status, resp.read(4096).decode(errors="replace"),
                                    name)
            self._stream_log(conn, resp, int(opts.get("limitBytes") or 0))
        finally:
            conn.close()

    def _stream_log(self, conn: http.client.HTTPConnection, resp, limit: int) -> None:
        """Copy the kubelet's body to the client chunk by chunk. A follow may be quiet for
        long: a watcher thread notices a gone client and shuts the kubelet connection, which
        ends the blocking read."""
        self.send_response(200)
        self.send_header("Content-Type", resp.getheader("Content-Type") or "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        done = threading.Event()

        def watch_peer() -> None:
            while not done.wait(0.5):
                if self._peer_closed():
                    try:
                        conn.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
        threading.Thread(target=watch_peer, name="log-peer", daemon=True).start()
        sent = 0
        try:
            while not limit or sent < limit:
                try:
                    data = resp.read1(65536)
                except (OSError, http.client.HTTPException):
                    data = b""
                if not data:
                    break
                if limit:
                    data = data[:limit - sent]
                sent += len(data)
                self._chunk(data)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client went away mid-write
            self.close_connection = True
        finally:
            done.set()

    # ---- watch
    def _peer_closed(self) -> bool:
        """A quiet watch would notice a gone client only on its next write: peek instead."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            return bool(r) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, res: R.Resource, ns: str | None, q: dict, accept: str) -> None:
        api = self.api
        pred = api.predicate(res, q.get("labelSelector", ""), q.get("fieldSelector", ""))
        rv = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents")
        bookmarks = q.get("allowWatchBookmarks") == "true"
        if send_initial is not None:
            if q.get("resourceVersionMatch") != "NotOlderThan":
                raise D.invalid_error(res, "", [(
                    "FieldValueForbidden", "resourceVersionMatch",
                    "Forbidden: sendInitialEvents requires setting resourceVersionMatch to "
                    "NotOlderThan")])
            if not bookmarks:
                raise D.invalid_error(res, "", [(
                    "FieldValueForbidden", "allowWatchBookmarks",
                    "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to "
                    "true")])
        initial = send_initial == "true" or (send_initial is None and rv in ("", "0"))
        since = None if initial else rv
        timeout = float(q.get("timeoutSeconds") or random.uniform(1800, 3600))
        table = "as=Table" in accept
        watcher, first, start_rv = api.store.watch(storage_res(res), ns, pred, since, initial)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            columns_sent = [False]

            def emit(etype: str, obj: dict) -> None:
                obj = to_external(res, copy.deepcopy(obj))
                if table and etype != "BOOKMARK":
                    obj = api.table(res, [obj], obj["metadata"]["resourceVersion"],
                                    q.get("includeObject", "Metadata"),
                                    columns=not columns_sent[0])
                    columns_sent[0] = True
                self._chunk(json.dumps({"type": etype, "object": obj}).encode() + b"\n")

            def bookmark(rv_now: int, end: bool = False) -> None:
                md = {"resourceVersion": str(rv_now)}
                if end:
                    md["annotations"] = {"k8s.io/initial-events-end": "true"}
                self._chunk(json.dumps({"type": "BOOKMARK", "object": {
                    "kind": res.kind, "apiVersion": res.api_version, "metadata": md}})
                    .encode() + b"\n")

            last_rv = start_rv
            for etype, obj in first:
                emit(etype, obj)
            if send_initial == "true":
                bookmark(start_rv, end=True)
            deadline = time.monotonic() + timeout
            next_bm = time.monotonic() + 30
            while not watcher.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    etype, obj = watcher.queue.get(timeout=min(left, 1.0))
                except Exception:  # queue.Empty: check the time and the peer
                    if self._peer_closed():
                        break
                    if bookmarks and time.monotonic() > next_bm:
                        bookmark(max(last_rv, api.store.rv))
                        next_bm = time.monotonic() + 30
                    continue
                last_rv = int(obj["metadata"].get("resourceVersion", last_rv))
                emit(etype, obj)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            api.store.unwatch(watcher)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(bind: str, port: int, data: str | None) -> tuple[Server, Api]:
    api = Api(Store(data))
    handler = type("BoundHandler", (Handler,), {"api": api})
    srv = Server((bind, port), handler)
    return srv, api


def serve_in_thread(bind: str = "127.0.0.1", port: int = 0, data: str | None = None):
    """Start a server on a free port in a daemon thread (tests). Returns (server, api, url)."""
    srv, api = make_server(bind, port, data)
    t = threading.Thread(target=srv.serve_forever, name="apiserver", daemon=True)
    t.start()
    sweeper = threading.Thread(target=_sweep_loop, args=(srv, api), daemon=True)
    sweeper.start()
    return srv, api, f"http://{bind}:{srv.server_address[1]}"


def _sweep_loop(srv: Server, api: Api) -> None:
    while not getattr(srv, "_BaseServer__shutdown_request", False):
        time.sleep(1)
        try:
            api.sweep_namespaces()
        except Exception:
            log.exception("namespace sweep failed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labtwin.kube.apiserver",
                                 description="Kubernetes API twin (plain HTTP, no auth).")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--data", default=None, help="directory the objects are persisted to")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if a.data and not re.match(r"^[^\0]+$", a.data):
        ap.error("--data must be a path")
    srv, api = make_server(a.bind, a.port, a.data)
    threading.Thread(target=_sweep_loop, args=(srv, api), daemon=True).start()

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    log.info("labtwin apiserver listening on http://%s:%d (data: %s)", a.bind,
             srv.server_address[1], a.data or "memory only")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
