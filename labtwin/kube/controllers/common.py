"""Helpers shared by the controllers: selectors, pod state predicates, owner references, events."""
from __future__ import annotations

import copy
import datetime as _dt
import logging
import secrets
import threading
import time as _time
from typing import Any

log = logging.getLogger(__name__)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def ns_of(obj: dict) -> str:
    return obj.get("metadata", {}).get("namespace") or ""


def name_of(obj: dict) -> str:
    return obj["metadata"]["name"]


def uid_of(obj: dict) -> str:
    return obj.get("metadata", {}).get("uid", "")


# -- label selectors (metav1.LabelSelector) --------------------------------------------------------

def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """matchLabels AND matchExpressions; an empty selector matches everything, None matches nothing."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


# -- owner references -------------------------------------------------------------------------------

def controller_ref(owner: dict, api_version: str, kind: str) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": name_of(owner), "uid": uid_of(owner),
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: dict) -> dict | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == uid_of(owner)


# -- pod predicates (pkg/api/v1/pod and the statefulset controller's utils) ---------------------------

def condition(obj: dict, ctype: str) -> dict | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def is_running_and_ready(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and is_pod_ready(pod)


def is_terminating(obj: dict) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def is_healthy(pod: dict) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def is_failed(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Failed"


def is_succeeded(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Succeeded"


def is_available(pod: dict, min_ready_seconds: int, at: _dt.datetime | None = None) -> bool:
    if not is_running_and_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = condition(pod, "Ready") or {}
    t = c.get("lastTransitionTime")
    if not t:
        return False
    since = _dt.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    return (at or _dt.datetime.now(_dt.timezone.utc)) - since >= _dt.timedelta(seconds=min_ready_seconds)


def deepcopy(obj: Any) -> Any:
    return copy.deepcopy(obj)


# -- events -----------------------------------------------------------------------------------------

class Recorder:
    """Writes core/v1 Events like client-go's recorder: name <object>.<hex>, repeats counted."""

    def __init__(self, client, component: str, host: str = ""):
        self.client, self.component, self.host = client, component, host
        self._seen: dict[tuple, dict] = {}
        self._written: dict[tuple, float] = {}
        self.min_interval = 5.0
        self._lock = threading.Lock()

    def event(self, obj: dict, etype: str, reason: str, message: str) -> None:
        md = obj.get("metadata", {})
        ns = md.get("namespace") or "default"
        key = (md.get("uid"), reason, message)
        ts = now()
        try:
            with self._lock:
                prev = self._seen.get(key)
                if prev is not None:
                    prev["count"] = prev.get("count", 1) + 1
                    prev["lastTimestamp"] = ts
                    if _time.monotonic() - self._written.get(key, 0) < self.min_interval:
                        return  # counted; written with the next repeat, like the correlator's spam filter
                    self._written[key] = _time.monotonic()
            if prev is not None:  # same event again: bump the count like the real correlator
                try:
                    prev = self.client.update("events", prev)
                except Exception:
                    prev = None
                if prev is not None:
                    with self._lock:
                        self._seen[key] = prev
                    return
            ev = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{md.get('name')}.{secrets.token_hex(8)}", "namespace": ns},
                "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                                   "name": md.get("name"), "namespace": md.get("namespace"),
                                   "uid": md.get("uid"), "resourceVersion": md.get("resourceVersion")},
                "reason": reason, "message": message, "type": etype,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host,
            }
            created = self.client.create("events", ev, ns)
            with self._lock:
                self._seen[key] = created
                self._written[key] = _time.monotonic()
        except Exception as e:  # events are best effort, as in client-go
            log.warning("event %s %s not recorded: %s", reason, message, e)


from ..client import ApiError as ApiErrorT  # noqa: E402  (re-exported for the controllers)
