"""A small Kubernetes REST client (stdlib only) for the twin's controllers and kubelet.

It speaks the same HTTP the real client-go does: JSON bodies, the three patch content types,
status/scale/binding subresources, and watch streams (one JSON event per line) that are resumed
from the last resourceVersion seen and relisted on 410 Gone, like a client-go reflector.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    group_version: str  # "v1" for the core group, else "group/version"
    plural: str
    kind: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


_RESOURCES = [
    Resource("v1", "namespaces", "Namespace", False),
    Resource("v1", "nodes", "Node", False),
    Resource("v1", "pods", "Pod", True),
    Resource("v1", "services", "Service", True),
    Resource("v1", "serviceaccounts", "ServiceAccount", True),
    Resource("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    Resource("v1", "persistentvolumes", "PersistentVolume", False),
    Resource("v1", "events", "Event", True),
    Resource("v1", "endpoints", "Endpoints", True),
    Resource("apps/v1", "deployments", "Deployment", True),
    Resource("apps/v1", "replicasets", "ReplicaSet", True),
    Resource("apps/v1", "statefulsets", "StatefulSet", True),
    Resource("apps/v1", "controllerrevisions", "ControllerRevision", True),
    Resource("storage.k8s.io/v1", "storageclasses", "StorageClass", False),
    Resource("coordination.k8s.io/v1", "leases", "Lease", True),
]
RESOURCES: dict[str, Resource] = {r.plural: r for r in _RESOURCES}
BY_KIND: dict[tuple[str, str], Resource] = {(r.group_version, r.kind): r for r in _RESOURCES}

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason (NotFound, ...)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:  # AlreadyExists and Conflict are both 409
        return self.status == 409


def resource_for(api_version: str, kind: str) -> Resource:
    try:
        return BY_KIND[(api_version, kind)]
    except KeyError:
        raise KeyError(f"unknown kind {api_version}/{kind}: add it to labtwin.kube.client._RESOURCES") from None


class Client:
    def __init__(self, server: str, timeout: float = 30.0, user_agent: str = "labtwin"):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.user_agent = user_agent

    # -- plumbing -------------------------------------------------------------
    def path(self, plural: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        r = RESOURCES[plural]
        p = r.prefix
        if r.namespaced and namespace:
            p += f"/namespaces/{urllib.parse.quote(namespace)}"
        p += f"/{plural}"
        if name is not None:
            p += f"/{urllib.parse.quote(name)}"
        if subresource:
            p += f"/{subresource}"
        return p

    def _open(self, method: str, path: str, body: Any = None, params: dict | None = None,
              content_type: str = "application/json", timeout: float | None = None):
        url = self.server + path
        q = {k: v for k, v in (params or {}).items() if v is not None}
        if q:
            url += "?" + urllib.parse.urlencode(q)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", self.user_agent)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                st = json.loads(raw)
                raise ApiError(e.code, st.get("reason", ""), st.get("message", raw.decode(errors="replace"))) from None
            except ValueError:
                raise ApiError(e.code, "", raw.decode(errors="replace")) from None

    def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                content_type: str = "application/json") -> dict:
        with self._open(method, path, body, params, content_type) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    # -- verbs ----------------------------------------------------------------
    def get(self, plural: str, name: str, namespace: str | None = None, subresource: str | None = None) -> dict:
        return self.request("GET", self.path(plural, namespace, name, subresource))

    def get_or_none(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.get(plural, name, namespace)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def list(self, plural: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> dict:
        return self.request("GET", self.path(plural, namespace),
                            params={"labelSelector": label_selector, "fieldSelector": field_selector})

    def create(self, plural: str, obj: dict, namespace: str | None = None, subresource: str | None = None,
               name: str | None = None) -> dict:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return self.request("POST", self.path(plural, ns, name, subresource), obj)

    def update(self, plural: str, obj: dict, subresource: str | None = None) -> dict:
        md = obj["metadata"]
        return self.request("PUT", self.path(plural, md.get("namespace"), md["name"], subresource), obj)

    def update_status(self, plural: str, obj: dict) -> dict:
        return self.update(plural, obj, "status")

    def patch(self, plural: str, name: str, patch: Any, namespace: str | None = None, type: str = "merge",
              subresource: str | None = None, field_manager: str | None = None) -> dict:
        return self.request("PATCH", self.path(plural, namespace, name, subresource), patch,
                            params={"fieldManager": field_manager}, content_type=PATCH_TYPES[type])

    def delete(self, plural: str, name: str, namespace: str | None = None, grace_period_seconds: int | None = None,
               propagation: str | None = None, uid: str | None = None) -> dict:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation:
            opts["propagationPolicy"] = propagation
        if uid:  # precondition: never delete a successor object that reused the name
            opts["preconditions"] = {"uid": uid}
        return self.request("DELETE", self.path(plural, namespace, name), opts)

    def watch(self, plural: str, namespace: str | None = None, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_seconds: int = 60) -> Iterator[dict]:
        """One watch request: yields {"type", "object"} events until the server closes it."""
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "timeoutSeconds": str(timeout_seconds)}
        with self._open("GET", self.path(plural, namespace), params=params, timeout=timeout_seconds + 15) as resp:
            for line in resp:
                line = line.strip()
                if line:
                    yield json.loads(line)


class Gone(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class Informer:
    """list + watch one resource into a cache keyed by (namespace, name), calling handlers on change.

    Like a client-go reflector: the watch resumes from the last resourceVersion seen (bookmarks
    included); on 410 Gone or a broken stream it relists and replays the differences.
    """

    def __init__(self, client: Client, plural: str, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client, self.plural, self.namespace = client, plural, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.cache: dict[tuple[str, str], dict] = {}
        self.lock = threading.RLock()
        self.handlers: list[Callable[[str, dict, dict | None], None]] = []
        self.synced = threading.Event()
        self.stop = threading.Event()
        self.resource_version: str | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def key(obj: dict) -> tuple[str, str]:
        md = obj["metadata"]
        return (md.get("namespace") or "", md["name"])

    def add_handler(self, fn: Callable[[str, dict, dict | None], None]) -> None:
        """fn(event_type, obj, old_obj) with event_type ADDED / MODIFIED / DELETED."""
        self.handlers.append(fn)

    def items(self) -> list[dict]:
        with self.lock:
            return list(self.cache.values())

    def get(self, namespace: str, name: str) -> dict | None:
        with self.lock:
            return self.cache.get((namespace or "", name))

    def _emit(self, etype: str, obj: dict, old: dict | None) -> None:
        for h in self.handlers:
            try:
                h(etype, obj, old)
            except Exception:  # a handler bug must not kill the reflector
                log.exception("handler failed for %s %s", self.plural, self.key(obj))

    def _relist(self) -> None:
        lst = self.client.list(self.plural, self.namespace, self.label_selector, self.field_selector)
        fresh = {self.key(o): o for o in lst.get("items", [])}
        with self.lock:
            old = self.cache
            self.cache = fresh
            self.resource_version = lst.get("metadata", {}).get("resourceVersion")
        for k, o in fresh.items():
            prev = old.get(k)
            if prev is None:
                self._emit("ADDED", o, None)
            elif prev.get("metadata", {}).get("resourceVersion") != o["metadata"].get("resourceVersion"):
                self._emit("MODIFIED", o, prev)
        for k, o in old.items():
            if k not in fresh:
                self._emit("DELETED", o, o)
        self.synced.set()

    def _watch_once(self) -> None:
        for ev in self.client.watch(self.plural, self.namespace, self.resource_version,
                                    self.label_selector, self.field_selector):
            if self.stop.is_set():
                return
            etype, obj = ev.get("type"), ev.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    raise Gone()
                raise ApiError(obj.get("code", 500), obj.get("reason", ""), obj.get("message", ""))
            rv = obj.get("metadata", {}).get("resourceVersion")
            if etype == "BOOKMARK":
                self.resource_version = rv or self.resource_version
                continue
            k = self.key(obj)
            with self.lock:
                old = self.cache.get(k)
                if etype == "DELETED":
                    self.cache.pop(k, None)
                else:
                    self.cache[k] = obj
                self.resource_version = rv or self.resource_version
            self._emit(etype, obj, old)

    def run(self) -> None:
        backoff = 0.2
        need_list = True
        while not self.stop.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._watch_once()  # returns when the server ends the watch: resume from our RV
                backoff = 0.2
            except Gone:
                need_list = True
            except (ApiError, OSError, socket.timeout, ValueError) as e:
                log.warning("%s watch failed (%s); relisting in %.1fs", self.plural, e, backoff)
                need_list = True
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def start(self) -> "Informer":
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.plural}", daemon=True)
        self._thread.start()
        return self

    def wait_synced(self, timeout: float = 30.0) -> bool:
        return self.synced.wait(timeout)
