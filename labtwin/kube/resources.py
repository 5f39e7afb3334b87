"""The kinds the API twin serves: names, scope, verbs, subresources and the Table columns that
`kubectl get` prints (the column sets follow pkg/printers/internalversion/printers.go of
Kubernetes 1.32). Removed API versions (extensions/v1beta1, apps/v1beta1, rbac v1beta1,
policy/v1beta1) are simply absent, so kubectl refuses them from discovery as with a real server."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Callable

VERBS_ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
VERBS_SUB = ["get", "patch", "update"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0  # 1 = only with -o wide


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale"
    columns: tuple[Column, ...] = ()
    cells: Callable[[dict, float], list] | None = field(default=None, compare=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects of one group+plural share one store across served versions."""
        return (self.group, self.plural)


# ---------------------------------------------------------------- time and helpers for cells

def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=_dt.timezone.utc).timestamp()
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    s = int(max(seconds, 0))
    if s < 60 * 2:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 60 * 3:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{(s % 3600) // 60}m" if (s % 3600) // 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    y = h // (24 * 365)
    if y < 8:
        d = (h // 24) % 365
        return f"{y}y{d}d" if d else f"{y}y"
    return f"{y}y"


def age(obj: dict, now: float) -> str:
    t = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration(now - t)


def _name(obj: dict) -> str:
    return obj.get("metadata", {}).get("name", "")


def _containers_images(spec: dict) -> tuple[str, str]:
    cs = spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector_string(sel: dict | None) -> str:
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, vals = e.get("operator"), ",".join(e.get("values") or [])
        if op == "In":
            parts.append(f"{e['key']} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{e['key']} notin ({vals})")
        elif op == "Exists":
            parts.append(e["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{e['key']}")
    return ",".join(parts) or "<none>"


def _map_selector(sel: dict | None) -> str:
    if not sel:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column("Age", description="CreationTimestamp is a timestamp representing the server time "
             "when this object was created.")


# ---------------------------------------------------------------- per-kind cells

def pod_cells(o: dict, now: float) -> list:
    spec, st = o.get("spec", {}), o.get("status", {})
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        s = cs.get("state", {})
        if s.get("terminated", {}).get("exitCode", 0) == 0 and "terminated" in s:
            continue
        if "terminated" in s:
            reason = "Init:" + (s["terminated"].get("reason") or "Error")
        elif s.get("waiting", {}).get("reason") and s["waiting"]["reason"] != "PodInitializing":
            reason = "Init:" + s["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        break
    else:
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            s = cs.get("state", {})
            if s.get("waiting", {}).get("reason"):
                reason = s["waiting"]["reason"]
            elif s.get("terminated", {}).get("reason"):
                reason = s["terminated"]["reason"]
            elif "terminated" in s:
                t = s["terminated"]
                reason = (f"Signal:{t['signal']}" if t.get("signal")
                          else f"ExitCode:{t.get('exitCode', 0)}")
            elif "running" in s and cs.get("ready"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running"
    if o.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    last = max((parse_time(cs.get("lastState", {}).get("terminated", {}).get("finishedAt"))
                or 0 for cs in st.get("containerStatuses") or []), default=0)
    restarts_text = f"{restarts} ({human_duration(now - last)} ago)" if last else str(restarts)
    return [_name(o), f"{ready}/{total}", reason, restarts_text, age(o, now),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>",
            f"{len(gates)}/{len(gates)}" if gates else "<none>"]


def pvc_cells(o: dict, now: float) -> list:
    spec, st = o.get("spec", {}), o.get("status", {})
    phase = st.get("phase") or "Pending"
    if o.get("metadata", {}).get("deletionTimestamp"):
        phase = "Terminating"
    cap = (st.get("capacity") or {}).get("storage", "") if spec.get("volumeName") else ""
    modes = _access_modes(st.get("accessModes") or []) if spec.get("volumeName") else ""
    return [_name(o), phase, spec.get("volumeName", ""), cap, modes,
            spec.get("storageClassName") or "", spec.get("volumeAttributesClassName") or "<unset>",
            age(o, now), spec.get("volumeMode", "")]


def _access_modes(modes: list) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes)


def pv_cells(o: dict, now: float) -> list:
    spec, st = o.get("spec", {}), o.get("status", {})
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = st.get("phase") or "Pending"
    if o.get("metadata", {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [_name(o), (spec.get("capacity") or {}).get("storage", ""),
            _access_modes(spec.get("accessModes") or []),
            spec.get("persistentVolumeReclaimPolicy", ""), phase, claim,
            spec.get("storageClassName", ""), spec.get("volumeAttributesClassName") or "<unset>",
            st.get("reason", ""), age(o, now), spec.get("volumeMode", "")]


def sts_cells(o: dict, now: float) -> list:
    spec, st = o.get("spec", {}), o.get("status", {})
    names, images = _containers_images(spec.get("template", {}).get("spec", {}))
    return [_name(o), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", age(o, now),
            names, images]


def deploy_cells(o: dict, now: float) -> list:
    spec, st = o.get("spec", {}), o.get("status", {})
    names, images = _containers_images(spec.get("template", {}).get("spec", {}))
    return [_name(o), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(o, now),
            names, images, _selector_string(spec.get("selector"))]


def rs_cells(o: dict, now: float) -> list:
    spec, st = o.get("spec", {}), o.get("status", {})
    names, images = _containers_images(spec.get("template", {}).get("spec", {}))
    return [_name(o), spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(o, now), names, images, _selector_string(spec.get("selector"))]


def svc_cells(o: dict, now: float) -> list:
    spec = o.get("spec", {})
    ports = []
    for p in spec.get("ports") or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        ports.append(f"{s}/{p.get('protocol', 'TCP')}")
    ext = ",".join(spec.get("externalIPs") or []) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    return [_name(o), spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", ext,
            ",".join(ports) or "<none>", age(o, now), _map_selector(spec.get("selector"))]


def sc_cells(o: dict, now: float) -> list:
    name = _name(o)
    ann = o.get("metadata", {}).get("annotations") or {}
    if ann.get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, o.get("provisioner", ""), o.get("reclaimPolicy", "Delete"),
            o.get("volumeBindingMode", "Immediate"),
            "true" if o.get("allowVolumeExpansion") else "false", age(o, now)]


def node_cells(o: dict, now: float) -> list:
    st = o.get("status", {})
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready"), "Unknown")
    if o.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (o.get("metadata", {}).get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    info = st.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [_name(o), status, ",".join(r for r in roles if r) or "<none>", age(o, now),
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"),
            addrs.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def ns_cells(o: dict, now: float) -> list:
    return [_name(o), o.get("status", {}).get("phase", "Active"), age(o, now)]


def sa_cells(o: dict, now: float) -> list:
    return [_name(o), len(o.get("secrets") or []), age(o, now)]


def created_at_cells(o: dict, now: float) -> list:
    return [_name(o), o.get("metadata", {}).get("creationTimestamp", "")]


def binding_cells(o: dict, now: float) -> list:
    ref = o.get("roleRef") or {}
    subj = o.get("subjects") or []

    def pick(kind: str) -> str:
        return ",".join((f"{s.get('namespace')}/{s['name']}" if kind == "ServiceAccount"
                         else s["name"]) for s in subj if s.get("kind") == kind)
    return [_name(o), f"{ref.get('kind', '')}/{ref.get('name', '')}", age(o, now),
            pick("User"), pick("Group"), pick("ServiceAccount")]


def endpoints_cells(o: dict, now: float) -> list:
    eps = []
    for s in o.get("subsets") or []:
        for a in s.get("addresses") or []:
            for p in s.get("ports") or [{}]:
                eps.append(f"{a.get('ip')}:{p.get('port')}" if p.get("port") else a.get("ip"))
    txt = ",".join(eps[:3]) + (f" + {len(eps) - 3} more..." if len(eps) > 3 else "")
    return [_name(o), txt or "<none>", age(o, now)]


def cr_cells(o: dict, now: float) -> list:
    ctl = next((r for r in o.get("metadata", {}).get("ownerReferences") or []
                if r.get("controller")), None)
    owner = "<none>"
    if ctl:
        group = ctl.get("apiVersion", "").split("/")[0] if "/" in ctl.get("apiVersion", "") else ""
        owner = f"{ctl['kind'].lower()}{'.' + group if group else ''}/{ctl['name']}"
    return [_name(o), owner, o.get("revision", 0), age(o, now)]


def event_cells(o: dict, now: float) -> list:
    inv = o.get("involvedObject") or o.get("regarding") or {}
    last = parse_time(o.get("lastTimestamp") or o.get("eventTime") or
                      (o.get("series") or {}).get("lastObservedTime") or
                      o.get("deprecatedLastTimestamp") or
                      o.get("metadata", {}).get("creationTimestamp"))
    first = parse_time(o.get("firstTimestamp") or o.get("deprecatedFirstTimestamp") or
                       o.get("eventTime"))
    src = o.get("source") or {}
    source = src.get("component") or o.get("reportingController") or \
        o.get("reportingComponent") or ""
    if src.get("host"):
        source += ", " + src["host"]
    return [human_duration(now - last) if last else "<unknown>", o.get("type", ""),
            o.get("reason", ""), f"{inv.get('kind', '').lower()}/{inv.get('name', '')}",
            o.get("message") or o.get("note", ""), inv.get("fieldPath", ""), source,
            human_duration(now - first) if first else "<unknown>",
            o.get("count") or o.get("deprecatedCount") or 1, _name(o)]


def lease_cells(o: dict, now: float) -> list:
    return [_name(o), o.get("spec", {}).get("holderIdentity", ""), age(o, now)]


_CI = Column("Containers", description="Names of each container in the template.", priority=1)
_IM = Column("Images", description="Images referenced by each container in the template.",
             priority=1)
_SEL = Column("Selector", description="Label selector.", priority=1)
CREATED_AT = (NAME, Column("Created At", type="date", description="Time is a wrapper around "
                           "time.Time."))
BINDING_COLS = (NAME, Column("Role"), AGE, Column("Users", priority=1),
                Column("Groups", priority=1), Column("ServiceAccounts", priority=1))
EVENT_COLS = (Column("Last Seen"), Column("Type"), Column("Reason"), Column("Object"),
              Column("Message"), Column("Subobject", priority=1), Column("Source", priority=1),
              Column("First Seen", priority=1), Column("Count", type="integer", priority=1),
              Column("Name", priority=1))


def _r(group, version, kind, plural, namespaced, short=(), cats=(), subs=(), cols=(AGE,),
       cells=None) -> Resource:
    if cells is None:
        def cells(o, now):  # the default printer: name and age
            return [_name(o), age(o, now)]
        cols = (NAME, AGE)
    return Resource(group, version, kind, plural, kind.lower(), namespaced, tuple(short),
                    tuple(cats), tuple(subs), tuple(cols), cells)


RESOURCES: list[Resource] = [
    _r("", "v1", "Namespace", "namespaces", False, ["ns"], subs=["status"],
       cols=(NAME, Column("Status"), AGE), cells=ns_cells),
    _r("", "v1", "Node", "nodes", False, ["no"], subs=["status"], cols=(
        NAME, Column("Status"), Column("Roles"), AGE, Column("Version"),
        Column("Internal-IP", priority=1), Column("External-IP", priority=1),
        Column("OS-Image", priority=1), Column("Kernel-Version", priority=1),
        Column("Container-Runtime", priority=1)), cells=node_cells),
    _r("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"],
       cols=(NAME, Column("Secrets", type="integer"), AGE), cells=sa_cells),
    _r("", "v1", "Service", "services", True, ["svc"], ["all"], ["status"], cols=(
        NAME, Column("Type"), Column("Cluster-IP"), Column("External-IP"), Column("Port(s)"), AGE,
        _SEL), cells=svc_cells),
    _r("", "v1", "Endpoints", "endpoints", True, ["ep"],
       cols=(NAME, Column("Endpoints"), AGE), cells=endpoints_cells),
    _r("", "v1", "Pod", "pods", True, ["po"], ["all"], ["status"], cols=(
        NAME, Column("Ready"), Column("Status"), Column("Restarts", type="string"), AGE,
        Column("IP", priority=1), Column("Node", priority=1),
        Column("Nominated Node", priority=1), Column("Readiness Gates", priority=1)),
       cells=pod_cells),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"], subs=["status"],
       cols=(NAME, Column("Status"), Column("Volume"), Column("Capacity"),
             Column("Access Modes"), Column("StorageClass"), Column("VolumeAttributesClass"),
             AGE, Column("VolumeMode", priority=1)), cells=pvc_cells),
    _r("", "v1", "PersistentVolume", "persistentvolumes", False, ["pv"], subs=["status"],
       cols=(NAME, Column("Capacity"), Column("Access Modes"), Column("Reclaim Policy"),
             Column("Status"), Column("Claim"), Column("StorageClass"),
             Column("VolumeAttributesClass"), Column("Reason"), AGE,
             Column("VolumeMode", priority=1)), cells=pv_cells),
    _r("", "v1", "Event", "events", True, ["ev"], cols=EVENT_COLS, cells=event_cells),
    _r("apps", "v1", "Deployment", "deployments", True, ["deploy"], ["all"], ["status", "scale"],
       cols=(NAME, Column("Ready"), Column("Up-to-date", type="integer"),
             Column("Available", type="integer"), AGE, _CI, _IM, _SEL), cells=deploy_cells),
    _r("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], ["all"], ["status", "scale"],
       cols=(NAME, Column("Desired", type="integer"), Column("Current", type="integer"),
             Column("Ready", type="integer"), AGE, _CI, _IM, _SEL), cells=rs_cells),
    _r("apps", "v1", "StatefulSet", "statefulsets", True, ["sts"], ["all"], ["status", "scale"],
       cols=(NAME, Column("Ready"), AGE, _CI, _IM), cells=sts_cells),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions", True,
       cols=(NAME, Column("Controller"), Column("Revision", type="integer"), AGE),
       cells=cr_cells),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False,
       cols=CREATED_AT, cells=created_at_cells),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False,
       cols=BINDING_COLS, cells=binding_cells),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles", True,
       cols=CREATED_AT, cells=created_at_cells),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True,
       cols=BINDING_COLS, cells=binding_cells),
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ["sc"], cols=(
        NAME, Column("Provisioner"), Column("ReclaimPolicy"), Column("VolumeBindingMode"),
        Column("AllowVolumeExpansion"), AGE), cells=sc_cells),
    _r("events.k8s.io", "v1", "Event", "events", True, ["ev"], cols=EVENT_COLS,
       cells=event_cells),
    _r("coordination.k8s.io", "v1", "Lease", "leases", True,
       cols=(NAME, Column("Holder"), AGE), cells=lease_cells),
]

# Group order as a real server lists them in /apis (kubectl prefers earlier groups for
# ambiguous short names such as "events": core first, then events.k8s.io).
GROUP_ORDER = ["", "apps", "events.k8s.io", "autoscaling", "rbac.authorization.k8s.io",
               "storage.k8s.io", "coordination.k8s.io"]

# Scale is served under apps but is an autoscaling/v1 object; the group is listed in discovery
# with no top-level resources of ours, as kubectl only needs the responseKind.
SCALE_GVK = {"group": "autoscaling", "version": "v1", "kind": "Scale"}


@dataclass(frozen=True)
class Special:
    """A subresource with its own kind and verbs, served by a dedicated handler rather than as a
    view of the object (status, scale): discovery lists it so kubectl and RBAC tools see it."""
    name: str
    kind: dict
    verbs: tuple[str, ...]


SPECIAL_SUBRESOURCES: dict[tuple[str, str], tuple[Special, ...]] = {
    ("", "pods"): (
        Special("binding", {"group": "", "version": "v1", "kind": "Binding"}, ("create",)),
        Special("log", {"group": "", "version": "v1", "kind": "Pod"}, ("get",))),
}


def specials(r: Resource) -> tuple[Special, ...]:
    return SPECIAL_SUBRESOURCES.get(r.key, ())


BY_GV_PLURAL: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES}


def groups() -> list[str]:
    seen = {r.group for r in RESOURCES}
    return [g for g in GROUP_ORDER if g in seen]


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def versions_of(group: str) -> list[str]:
    return sorted({r.version for r in RESOURCES if r.group == group})


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_GV_PLURAL.get((group, version, plural))
