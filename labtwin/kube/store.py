"""Object store of the API twin: objects per resource, one global resourceVersion counter, a
bounded event history for watches from a resourceVersion, fan-out to watchers, selectors, and
persistence of every object to the data dir as one JSON file (written to a temp file, then
renamed, so a crash never leaves a torn object)."""

from __future__ import annotations

import collections
import copy
import datetime as _dt
import json
import os
import queue
import re
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterable

from . import resources as R

HISTORY = 20000  # events kept for watches from an older resourceVersion (then 410 Gone)


class StatusError(Exception):
    """An error the server answers with a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def qualified(res: R.Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural


def not_found(res: R.Resource, name: str) -> StatusError:
    d = {"name": name, "kind": res.plural}
    if res.group:
        d["group"] = res.group
    return StatusError(404, "NotFound", f'{qualified(res)} "{name}" not found', d)


def already_exists(res: R.Resource, name: str) -> StatusError:
    d = {"name": name, "kind": res.plural}
    if res.group:
        d["group"] = res.group
    return StatusError(409, "AlreadyExists", f'{qualified(res)} "{name}" already exists', d)


def conflict(res: R.Resource, name: str) -> StatusError:
    d = {"name": name, "kind": res.plural}
    if res.group:
        d["group"] = res.group
    return StatusError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(res)} '
                       f'"{name}": the object has been modified; please apply your changes to '
                       f'the latest version and try again', d)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- selectors

def parse_label_selector(text: str) -> list[tuple[str, str, list[str]]]:
    """Parse the label selector syntax of k8s.io/apimachinery/pkg/labels into
    (key, op, values) requirements; op in = != in notin exists !exists."""
    reqs: list[tuple[str, str, list[str]]] = []
    text = text.strip()
    i = 0
    while i < len(text):
        m = re.compile(r"\s*(!)?\s*([A-Za-z0-9][A-Za-z0-9_./-]*)\s*").match(text, i)
        if not m:
            raise bad_request(f"unable to parse requirement: {text[i:]!r}")
        neg, key = m.group(1), m.group(2)
        i = m.end()
        if neg:
            reqs.append((key, "!exists", []))
        elif text.startswith(("==", "!="), i) or text.startswith("=", i):
            op = "!=" if text.startswith("!=", i) else "="
            i += 2 if text.startswith(("==", "!="), i) else 1
            v = re.compile(r"\s*([A-Za-z0-9_.-]*)\s*").match(text, i)
            reqs.append((key, op, [v.group(1)]))
            i = v.end()
        else:
            s = re.compile(r"(in|notin)\s*\(([^)]*)\)\s*").match(text, i)
            if s:
                vals = [x.strip() for x in s.group(2).split(",") if x.strip()]
                reqs.append((key, s.group(1), vals))
                i = s.end()
            else:
                reqs.append((key, "exists", []))
        if i < len(text):
            if text[i] != ",":
                raise bad_request(f"unable to parse requirement: found '{text[i:]}', "
                                  f"expected: ','")
            i += 1
    return reqs


def selector_from_label_selector(sel: dict | None) -> list[tuple[str, str, list[str]]]:
    """metav1.LabelSelector (matchLabels/matchExpressions) -> requirements."""
    reqs = [(k, "=", [v]) for k, v in sorted(((sel or {}).get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for e in (sel or {}).get("matchExpressions") or []:
        reqs.append((e["key"], ops[e["operator"]], list(e.get("values") or [])))
    return reqs


def labels_match(reqs: list[tuple[str, str, list[str]]], labels: dict | None) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has, v = key in labels, labels.get(key)
        if op == "=" and not (has and v == vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and not (has and v in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!exists" and has:
            return False
    return True


# field selectors a real server accepts per kind (fieldSelector "field label not supported")
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
              "regarding.kind", "regarding.name", "regarding.namespace"),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "PersistentVolumeClaim": (),
    "ReplicaSet": ("status.replicas",),
    "StatefulSet": (),
}


def parse_field_selector(text: str, kind: str) -> list[tuple[str, str, str]]:
    out = []
    allowed = ("metadata.name", "metadata.namespace") + FIELD_LABELS.get(kind, ())
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([A-Za-z.]+)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.groups()
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')
        out.append((field, "!=" if op == "!=" else "=", value))
    return out


def field_value(obj: dict, path: str) -> str:
    if path == "source":
        return (obj.get("source") or {}).get("component", "")
    cur = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def fields_match(reqs: list[tuple[str, str, str]], obj: dict) -> bool:
    for field, op, value in reqs:
        if (field_value(obj, field) == value) != (op == "="):
            return False
    return True


# ---------------------------------------------------------------- watchers

class Watcher:
    """One watch connection: a queue of (type, object) filtered by namespace and predicate."""

    def __init__(self, key, namespace: str | None, predicate: Callable[[dict], bool]):
        self.key, self.namespace, self.predicate = key, namespace, predicate
        self.queue: queue.Queue = queue.Queue()
        self.closed = False

    def offer(self, etype: str, obj: dict, old: dict | None) -> None:
        ns = obj.get("metadata", {}).get("namespace")
        if self.namespace is not None and ns != self.namespace:
            return
        now_in = self.predicate(obj)
        was_in = old is not None and self.predicate(old)
        # Like the watch cache: an object leaving the selection is DELETED for this watcher,
        # one entering it is ADDED.
        if etype == "MODIFIED":
            if now_in and was_in:
                self.queue.put(("MODIFIED", obj))
            elif now_in:
                self.queue.put(("ADDED", obj))
            elif was_in:
                self.queue.put(("DELETED", obj))
        elif now_in:
            self.queue.put((etype, obj))


# ---------------------------------------------------------------- the store

def _without_rv(obj: dict) -> dict:
    """The object as a no-op check sees it: no resourceVersion, managedFields without their
    timestamps (a write that only re-stamps ownership changes nothing)."""
    md = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    if "managedFields" in md:
        md["managedFields"] = [{k: v for k, v in m.items() if k != "time"}
                               for m in md["managedFields"] or []]
    return {**obj, "metadata": md}


class Store:
    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.lock = threading.RLock()
        self.rv = 0
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = \
            collections.defaultdict(dict)
        self.history: collections.deque = collections.deque(maxlen=HISTORY)
        self.watchers: list[Watcher] = []
        self.data_dir = Path(data_dir) if data_dir else None
        self.oldest_rv = 0  # history covers events with rv > oldest_rv
        if self.data_dir:
            self._load()

    # ---- persistence
    def _path(self, key, ns: str, name: str) -> Path:
        group, plural = key
        return self.data_dir / "objects" / (group or "core") / plural / (ns or "_cluster") / \
            f"{name}.json"

    def _write_atomic(self, path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)

    def _persist(self, key, ns: str, name: str, obj: dict | None) -> None:
        if not self.data_dir:
            return
        p = self._path(key, ns, name)
        if obj is None:
            p.unlink(missing_ok=True)
        else:
            self._write_atomic(p, obj)
        self._write_atomic(self.data_dir / "state.json", {"resourceVersion": self.rv})

    def _load(self) -> None:
        base = self.data_dir / "objects"
        state = self.data_dir / "state.json"
        if state.exists():
            self.rv = int(json.loads(state.read_text()).get("resourceVersion", 0))
        if base.exists():
            for f in base.glob("*/*/*/*.json"):
                group = "" if f.parts[-4] == "core" else f.parts[-4]
                obj = json.loads(f.read_text())
                md = obj.get("metadata", {})
                self.objects[(group, f.parts[-3])][(md.get("namespace", ""), md["name"])] = obj
                self.rv = max(self.rv, int(md.get("resourceVersion", "0")))
        # history before a restart is gone: older watches get 410 and re-list, as with etcd
        # compaction
        self.oldest_rv = self.rv

    # ---- reads
    def get(self, res: R.Resource, ns: str, name: str) -> dict:
        with self.lock:
            obj = self.objects[res.key].get((ns if res.namespaced else "", name))
            if obj is None:
                raise not_found(res, name)
            return copy.deepcopy(obj)

    def try_get(self, res: R.Resource, ns: str, name: str) -> dict | None:
        try:
            return self.get(res, ns, name)
        except StatusError:
            return None

    def list(self, res: R.Resource, ns: str | None,
             predicate: Callable[[dict], bool] = lambda o: True,
             deep: bool = True) -> tuple[list[dict], int]:
        """deep=False returns top-level copies sharing nested values with the store (stored
        objects are replaced, never changed in place): for callers that only serialize."""
        dup = copy.deepcopy if deep else dict
        with self.lock:
            items = [dup(o) for (ons, _), o in sorted(self.objects[res.key].items())
                     if (ns is None or ons == ns) and predicate(o)]
            return items, self.rv

    def all_objects(self, res: R.Resource) -> Iterable[dict]:
        with self.lock:
            return [copy.deepcopy(o) for o in self.objects[res.key].values()]

    # ---- writes (callers default and validate before; the store stamps metadata)
    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, key, etype: str, obj: dict, old: dict | None) -> None:
        self.history.append((self.rv, key, etype, obj, old))
        if len(self.history) == self.history.maxlen:
            self.oldest_rv = self.history[0][0] - 1
        for w in list(self.watchers):
            if w.key == key:
                w.offer(etype, obj, old)

    def create(self, res: R.Resource, obj: dict) -> dict:
        with self.lock:
            md = obj.setdefault("metadata", {})
            ns = md.get("namespace", "") if res.namespaced else ""
            if (ns, md["name"]) in self.objects[res.key]:
                raise already_exists(res, md["name"])
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            md["resourceVersion"] = self._next_rv()
            md.pop("deletionTimestamp", None)
            obj = copy.deepcopy(obj)
            self.objects[res.key][(ns, md["name"])] = obj
            self._persist(res.key, ns, md["name"], obj)
            self._emit(res.key, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def update(self, res: R.Resource, obj: dict, expect_rv: str | None = None) -> dict:
        """Replace the stored object. expect_rv: the client's resourceVersion (409 if stale)."""
        with self.lock:
            md = obj["metadata"]
            ns = md.get("namespace", "") if res.namespaced else ""
            old = self.objects[res.key].get((ns, md["name"]))
            if old is None:
                raise not_found(res, md["name"])
            if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, md["name"])
            for k in ("uid", "creationTimestamp"):
                md[k] = old["metadata"][k]
            if old["metadata"].get("deletionTimestamp"):
                md["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
                md.setdefault("deletionGracePeriodSeconds",
                              old["metadata"].get("deletionGracePeriodSeconds", 0))
            if _without_rv(obj) == _without_rv(old):
                return copy.deepcopy(old)  # no-op writes keep the resourceVersion (as real)
            # like the registry's shouldDeleteDuringUpdate: the last finalizer gone and no
            # grace period left (a terminating pod waits for its kubelet's final delete)
            if md.get("deletionTimestamp") and not md.get("finalizers") and \
                    not md.get("deletionGracePeriodSeconds"):
                return self._remove(res, ns, md["name"], obj)
            return self._put(res, ns, md["name"], obj, old)

    def _put(self, res: R.Resource, ns: str, name: str, obj: dict, old: dict) -> dict:
        """Store a new version of an existing object: next resourceVersion, disk, MODIFIED."""
        obj["metadata"]["resourceVersion"] = self._next_rv()
        obj = copy.deepcopy(obj)
        self.objects[res.key][(ns, name)] = obj
        self._persist(res.key, ns, name, obj)
        self._emit(res.key, "MODIFIED", obj, old)
        return copy.deepcopy(obj)

    def write_marked(self, res: R.Resource, ns: str, name: str, obj: dict, old: dict) -> dict:
        """Store an object being deleted as given (update would remove it once no finalizer
        and no grace period holds it)."""
        with self.lock:
            return self._put(res, ns if res.namespaced else "", name, obj, old)

    def _remove(self, res: R.Resource, ns: str, name: str, final: dict) -> dict:
        old = self.objects[res.key].pop((ns, name))
        final = copy.deepcopy(final)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self._persist(res.key, ns, name, None)
        self._emit(res.key, "DELETED", final, old)
        return copy.deepcopy(final)

    def delete(self, res: R.Resource, ns: str, name: str, expect_uid: str | None = None,
               expect_rv: str | None = None, grace: int | None = None) -> tuple[dict, bool]:
        """Delete, or mark for deletion when finalizers remain. Returns (object, gone)."""
        with self.lock:
            ns = ns if res.namespaced else ""
            old = self.objects[res.key].get((ns, name))
            if old is None:
                raise not_found(res, name)
            if expect_uid and expect_uid != old["metadata"]["uid"]:
                raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on '
                                  f'{qualified(res)} "{name}": Precondition failed: UID in '
                                  f'precondition: {expect_uid}, UID in object meta: '
                                  f'{old["metadata"]["uid"]}')
            if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return copy.deepcopy(old), False
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = grace or 0
                return self._put(res, ns, name, new, old), False
            return self._remove(res, ns, name, old), True

    # ---- watch
    def watch(self, res: R.Resource, ns: str | None, predicate: Callable[[dict], bool],
              since_rv: str | None, initial: bool) -> tuple[Watcher, list, int]:
        """Register a watcher. Returns (watcher, events to send first, rv at registration).
        initial=True: synthetic ADDED for every current object (watch without rv, rv=0, or
        sendInitialEvents). since_rv: replay history after that rv (410 if compacted)."""
        with self.lock:
            w = Watcher(res.key, ns, predicate)
            first: list = []
            if initial:
                for (ons, _), o in sorted(self.objects[res.key].items()):
                    if (ns is None or ons == ns) and predicate(o):
                        first.append(("ADDED", copy.deepcopy(o)))
            elif since_rv is not None:
                try:
                    since = int(since_rv)
                except ValueError:
                    raise bad_request(f"invalid resource version: {since_rv}")
                if since < self.oldest_rv:
                    raise StatusError(410, "Expired", f"too old resource version: {since} "
                                      f"({self.oldest_rv + 1})")
                tmp = Watcher(res.key, ns, predicate)
                for rv, key, etype, obj, old in self.history:
                    if rv > since and key == res.key:
                        tmp.offer(etype, obj, old)
                while not tmp.queue.empty():
                    first.append(tmp.queue.get())
            self.watchers.append(w)
            return w, first, self.rv

    def unwatch(self, w: Watcher) -> None:
        with self.lock:
            w.closed = True
            if w in self.watchers:
                self.watchers.remove(w)
