"""Kubernetes facts: ``kubectl ... -o json`` on the control-plane host, parsed to small dataclasses.

kubectl runs as the SSH user (a kubeadm admin has ~/.kube/config; root has /root/.kube/config),
so these facts do not use sudo. Every name and namespace is quoted (``labkit.shell.quote``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from labkit.errors import OperationError
from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

KUBECTL = "kubectl"


def _json(result: FactResult, what: str):
    text = result.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise OperationError(f"kubectl returned no JSON for {what}: {exc}: {text[:200]!r}") from None


def _items(data) -> list[dict]:
    if data is None:
        return []
    if data.get("kind", "").endswith("List") or "items" in data:
        return list(data.get("items") or [])
    return [data]


def image_tag(image: str | None) -> str | None:
    """The tag of an image reference ('host:5000/web:v2' -> 'v2'); None when untagged."""
    if not image:
        return None
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


class KubectlFact(Fact):
    """Base: kubectl facts fail loudly on a non-zero exit (the runner reports stderr)."""

    sudo = False


# ---- pods ---------------------------------------------------------------------

@dataclass(frozen=True)
class Pod:
    name: str
    ordinal: int | None
    node: str | None
    pod_ip: str | None
    phase: str | None
    ready: bool
    image: str | None          # what the pod spec asks for
    tag: str | None
    running_image: str | None  # what the container status reports
    revision: str | None       # controller-revision-hash label
    pvcs: tuple[str, ...] = ()
    deleting: bool = False
    waiting_reason: str | None = None


def parse_pod(obj: dict) -> Pod:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    ordinal = labels.get("apps.kubernetes.io/pod-index")
    if ordinal is None:
        # Before 1.28 there is no pod-index label; the StatefulSet names pods "<set>-<ordinal>".
        owner = next((o.get("name") for o in meta.get("ownerReferences") or [] if o.get("kind") == "StatefulSet"), None)
        suffix = meta.get("name", "")[len(owner) + 1:] if owner and meta.get("name", "").startswith(owner + "-") else ""
        ordinal = suffix if suffix.isdigit() else None
    containers = spec.get("containers") or []
    image = containers[0].get("image") if containers else None
    cstatus = (status.get("containerStatuses") or [{}])[0]
    waiting = (cstatus.get("state") or {}).get("waiting") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    pvcs = tuple(v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                 if v.get("persistentVolumeClaim"))
    return Pod(
        name=meta.get("name"),
        ordinal=int(ordinal) if ordinal is not None else None,
        node=spec.get("nodeName"),
        pod_ip=status.get("podIP"),
        phase=status.get("phase"),
        ready=ready,
        image=image,
        tag=image_tag(image),
        running_image=cstatus.get("image"),
        revision=labels.get("controller-revision-hash"),
        pvcs=pvcs,
        deleting=bool(meta.get("deletionTimestamp")),
        waiting_reason=waiting.get("reason"),
    )


class StatefulSetPods(KubectlFact):
    """Pods owned by the StatefulSet ``name``, sorted by ordinal."""

    def __init__(self, namespace: str, name: str, label: str):
        self.namespace, self.name, self.label = namespace, name, label

    def build(self) -> str:
        return f"{KUBECTL} get pods -n {quote(self.namespace)} -l {quote('app=' + self.label)} -o json"

    def process(self, result: FactResult) -> list[Pod]:
        pods = []
        for obj in _items(_json(result, "pods")):
            owners = (obj.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("kind") == "StatefulSet" and o.get("name") == self.name for o in owners):
                pods.append(parse_pod(obj))
        return sorted(pods, key=lambda p: (p.ordinal is None, p.ordinal or 0, p.name))


def pods_not_yet_matching(pods: list[Pod], replicas: int) -> list[str]:
    """What keeps the set from having exactly ordinals 0..replicas-1, Ready: ``kubectl rollout status``
    does not wait for a scale-down (it only needs ``replicas`` Ready pods), and OrderedReady removes the
    surplus from the top, one at a time. [] when the set is exactly as asked."""
    by = {p.ordinal: p for p in pods if p.ordinal is not None}
    extra = sorted(o for o in by if o >= replicas)
    missing = [o for o in range(replicas) if o not in by]
    deleting = [o for o in range(replicas) if o in by and by[o].deleting]
    unready = [o for o in range(replicas) if o in by and not by[o].ready and not by[o].deleting]
    out = []
    if extra:
        out.append(f"{len(extra)} pod(s) above the {replicas} asked still there ({_ordinals(extra)})")
    if missing:
        out.append(f"pod(s) {_ordinals(missing)} not created yet")
    if deleting:
        out.append(f"pod(s) {_ordinals(deleting)} being deleted")
    if unready:
        out.append(f"pod(s) {_ordinals(unready)} not Ready")
    return out


def _ordinals(ordinals: list[int]) -> str:
    return ", ".join(map(str, ordinals)) if len(ordinals) <= 4 else f"{ordinals[0]}-{ordinals[-1]}"

# ---- PVCs and PVs --------------------------------------------------------------

@dataclass(frozen=True)
class PVC:
    name: str
    phase: str | None
    volume: str | None
    storage_class: str | None
    requests: str | None = None
    uid: str | None = None


class PVCs(KubectlFact):
    """PVCs of the namespace; with ``prefix`` only those named ``<prefix><ordinal>`` (the set's
    claims: "test-statefulset-" must not take in "test-statefulset-b-0" of another set)."""

    def __init__(self, namespace: str, prefix: str = ""):
        self.namespace, self.prefix = namespace, prefix

    def build(self) -> str:
        return f"{KUBECTL} get pvc -n {quote(self.namespace)} -o json"

    def process(self, result: FactResult) -> list[PVC]:
        out = []
        for obj in _items(_json(result, "persistentvolumeclaims")):
            meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
            name = meta.get("name", "")
            if self.prefix and not (name.startswith(self.prefix) and name[len(self.prefix):].isdigit()):
                continue
            out.append(PVC(
                name=meta["name"], phase=status.get("phase"), volume=spec.get("volumeName") or None,
                storage_class=spec.get("storageClassName"),
                requests=((spec.get("resources") or {}).get("requests") or {}).get("storage"),
                uid=meta.get("uid"),
            ))
        return sorted(out, key=lambda c: c.name)


@dataclass(frozen=True)
class PV:
    name: str
    phase: str | None
    claim_namespace: str | None
    claim_name: str | None
    nfs_server: str | None
    nfs_path: str | None
    reclaim_policy: str | None
    storage_class: str | None = None


class PVs(KubectlFact):
    """All PersistentVolumes (cluster-scoped)."""

    def build(self) -> str:
        return f"{KUBECTL} get pv -o json"

    def process(self, result: FactResult) -> list[PV]:
        out = []
        for obj in _items(_json(result, "persistentvolumes")):
            meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
            claim = spec.get("claimRef") or {}
            nfs = spec.get("nfs") or {}
            out.append(PV(
                name=meta["name"], phase=status.get("phase"),
                claim_namespace=claim.get("namespace"), claim_name=claim.get("name"),
                nfs_server=nfs.get("server"), nfs_path=nfs.get("path"),
                reclaim_policy=spec.get("persistentVolumeReclaimPolicy"),
                storage_class=spec.get("storageClassName"),
            ))
        return sorted(out, key=lambda v: v.name)


# ---- StatefulSet ------------------------------------------------------------

@dataclass(frozen=True)
class StatefulSetState:
    name: str
    replicas: int
    partition: int
    image: str | None
    tag: str | None
    generation: int | None
    observed_generation: int | None
    current_revision: str | None
    update_revision: str | None
    ready_replicas: int
    updated_replicas: int
    current_replicas: int
    status_replicas: int
    uid: str | None = None

    @property
    def settled(self) -> bool:
        """The controller has seen the latest spec and the partitioned rollout is complete
        (the condition ``kubectl rollout status`` waits for)."""
        return (self.observed_generation is not None and self.generation is not None
                and self.observed_generation >= self.generation
                and self.ready_replicas >= self.replicas
                and self.updated_replicas >= self.replicas - self.partition)


def parse_statefulset(obj: dict) -> StatefulSetState:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    partition = (strategy.get("rollingUpdate") or {}).get("partition") or 0
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    image = containers[0].get("image") if containers else None
    return StatefulSetState(
        name=meta.get("name"),
        replicas=spec.get("replicas", 1),
        partition=partition,
        image=image,
        tag=image_tag(image),
        generation=meta.get("generation"),
        observed_generation=status.get("observedGeneration"),
        current_revision=status.get("currentRevision"),
        update_revision=status.get("updateRevision"),
        ready_replicas=status.get("readyReplicas") or 0,
        updated_replicas=status.get("updatedReplicas") or 0,
        current_replicas=status.get("currentReplicas") or 0,
        status_replicas=status.get("replicas") or 0,
        uid=meta.get("uid"),
    )


class StatefulSetFact(KubectlFact):
    """The StatefulSet, or None when it does not exist."""

    def __init__(self, namespace: str, name: str):
        self.namespace, self.name = namespace, name

    def build(self) -> str:
        return (f"{KUBECTL} get statefulset {quote(self.name)} -n {quote(self.namespace)} "
                "-o json --ignore-not-found")

    def process(self, result: FactResult) -> StatefulSetState | None:
        items = _items(_json(result, "statefulset"))
        return parse_statefulset(items[0]) if items else None


class ControllerRevisions(KubectlFact):
    """The StatefulSet's ControllerRevisions -> {revision name: image}. A pod's
    ``controller-revision-hash`` label and the set's current/updateRevision name one of them; each
    holds the pod template of that revision, so it says which image such a pod runs."""

    def __init__(self, namespace: str, name: str, label: str):
        self.namespace, self.name, self.label = namespace, name, label

    def build(self) -> str:
        return f"{KUBECTL} get controllerrevisions -n {quote(self.namespace)} -l {quote('app=' + self.label)} -o json"

    def process(self, result: FactResult) -> dict[str, str | None]:
        out = {}
        for obj in _items(_json(result, "controllerrevisions")):
            meta = obj.get("metadata") or {}
            if not any(o.get("kind") == "StatefulSet" and o.get("name") == self.name
                       for o in meta.get("ownerReferences") or []):
                continue
            template = (((obj.get("data") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            containers = template.get("containers") or []
            out[meta.get("name")] = containers[0].get("image") if containers else None
        return out


# ---- nodes, version, arbitrary objects --------------------------------------------

@dataclass(frozen=True)
class Node:
    name: str
    ready: bool
    internal_ip: str | None
    kubelet_version: str | None = None
    unschedulable: bool = False


class Nodes(KubectlFact):
    def build(self) -> str:
        return f"{KUBECTL} get nodes -o json"

    def process(self, result: FactResult) -> list[Node]:
        out = []
        for obj in _items(_json(result, "nodes")):
            meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            ip = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
            out.append(Node(name=meta.get("name"), ready=ready, internal_ip=ip,
                            kubelet_version=(status.get("nodeInfo") or {}).get("kubeletVersion"),
                            unschedulable=bool(spec.get("unschedulable"))))
        return sorted(out, key=lambda n: n.name)


@dataclass(frozen=True)
class KubectlVersion:
    client: str | None
    server: str | None
    error: str | None = None


class KubectlVersionFact(KubectlFact):
    """Client and server versions; an unreachable server is a fact (server None), not an error.
    Exit 127: kubectl is not installed."""

    command = f"{KUBECTL} version -o json"
    ok_exit_codes = (0, 1, 127)

    def process(self, result: FactResult) -> KubectlVersion:
        if result.exited == 127:
            return KubectlVersion(None, None, "kubectl not found on PATH")
        try:
            data = json.loads(result.stdout) if result.stdout.strip() else {}
        except ValueError:
            data = {}
        client = (data.get("clientVersion") or {}).get("gitVersion")
        server = (data.get("serverVersion") or {}).get("gitVersion")
        error = None
        if server is None:
            lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
            error = lines[-1] if lines else "no server version (is the API server reachable?)"
        return KubectlVersion(client, server, error)


# Resource names kubectl resolves without ambiguity (group-qualified) per kind.
RESOURCE = {
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles.rbac.authorization.k8s.io",
    "ClusterRoleBinding": "clusterrolebindings.rbac.authorization.k8s.io",
    "Role": "roles.rbac.authorization.k8s.io",
    "RoleBinding": "rolebindings.rbac.authorization.k8s.io",
    "Deployment": "deployments.apps",
    "StorageClass": "storageclasses.storage.k8s.io",
    "Service": "services",
    "StatefulSet": "statefulsets.apps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "PersistentVolume": "persistentvolumes",
}


def resource_ref(obj: dict) -> str:
    """'deployments.apps/nfs-client-provisioner' for a manifest object."""
    kind = obj["kind"]
    if kind not in RESOURCE:
        raise OperationError(f"no resource name known for kind {kind!r}")
    return f"{RESOURCE[kind]}/{obj['metadata']['name']}"


class Objects(KubectlFact):
    """The live versions of the given manifest objects (missing ones are simply absent).

    All objects must share one namespace (cluster-scoped ones ignore ``-n``).
    Result: {(kind, namespace or '', name): live object}.
    """

    def __init__(self, objects: list[dict]):
        namespaces = {o["metadata"].get("namespace") for o in objects} - {None}
        if len(namespaces) > 1:
            raise OperationError(f"objects span several namespaces: {sorted(namespaces)}")
        self.namespace = namespaces.pop() if namespaces else None
        self.refs = [resource_ref(o) for o in objects]

    def build(self) -> str:
        ns = f" -n {quote(self.namespace)}" if self.namespace else ""
        return f"{KUBECTL} get {quote(*self.refs)}{ns} -o json --ignore-not-found"

    def process(self, result: FactResult) -> dict:
        out = {}
        for obj in _items(_json(result, "objects")):
            meta = obj.get("metadata") or {}
            out[(obj.get("kind"), meta.get("namespace", ""), meta.get("name"))] = obj
        return out


# ---- namespace -------------------------------------------------------------------

@dataclass(frozen=True)
class Namespace:
    name: str
    phase: str | None                          # Active, Terminating
    labels: dict = field(default_factory=dict)  # labkit's own carries app.kubernetes.io/managed-by: labkit
    deleting: bool = False                     # metadata.deletionTimestamp is set


class NamespaceFact(KubectlFact):
    """The namespace ``name``, or None when it does not exist (``--ignore-not-found``: empty output)."""

    def __init__(self, name: str):
        self.name = name

    def build(self) -> str:
        return f"{KUBECTL} get namespace {quote(self.name)} -o json --ignore-not-found"

    def process(self, result: FactResult) -> Namespace | None:
        items = _items(_json(result, "namespace"))
        if not items:
            return None
        obj = items[0]
        if obj.get("kind") != "Namespace":
            raise OperationError(f"kubectl get namespace {self.name} returned a {obj.get('kind')!r}, not a Namespace")
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        return Namespace(name=meta.get("name"), phase=status.get("phase"), labels=dict(meta.get("labels") or {}),
                         deleting=bool(meta.get("deletionTimestamp")) or status.get("phase") == "Terminating")


# ---- why a rollout does not finish ---------------------------------------------

@dataclass(frozen=True)
class Blocker:
    """A pod that is not Ready or a PVC that is not Bound, with the latest event about it."""
    kind: str               # "pod" or "pvc"
    name: str
    state: str              # Pending, ContainerCreating, ImagePullBackOff, Running (not ready), ...
    reason: str | None      # the latest Warning event's reason (or, for a PVC, the latest event's)
    message: str | None
    fix: str | None         # what to do, when the reason says


def fix_for(reason: str | None, message: str | None, namespace: str = "default") -> str | None:
    """What the user can do about a blocking event (None: nothing labkit can say)."""
    msg, ns = message or "", "" if namespace == "default" else f" -n {quote(namespace)}"
    if "server gave HTTP response to HTTPS client" in msg:
        return "the node's container runtime does not trust the lab registry: run `invoke setup-registry`"
    if reason in ("ErrImagePull", "ImagePullBackOff", "Failed") and "pull" in msg.lower():
        return ("check that the image exists in the lab registry (`invoke build-images` for the web image, "
                "`invoke mirror-images` for the provisioner and other outside images) and the node can reach it")
    if reason == "FailedMount":
        return ("the node cannot mount the NFS export: check that the NFS server runs and exports "
                "nfs.export (`invoke setup-nfs`, then `invoke doctor`)")
    if reason == "ProvisioningFailed" and "forbidden" in msg:
        return ("the provisioner's RBAC refuses it: `invoke deploy` puts labkit's ClusterRole and Role "
                "back")
    if reason == "ProvisioningFailed":
        return f"check nfs.export and the provisioner's NFS_PATH (kubectl logs deploy/nfs-client-provisioner{ns})"
    if reason == "ExternalProvisioning":
        return ("no provisioner acts for this StorageClass: check that the provisioner pod runs "
                f"(kubectl get pods{ns} -l app=nfs-client-provisioner) and its PROVISIONER_NAME")
    return None


def _natural(name: str) -> tuple:
    """'statefulset-10' after 'statefulset-9'."""
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def _event_time(ev: dict) -> str:
    return (ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("series") or {}).get("lastObservedTime")
            or (ev.get("metadata") or {}).get("creationTimestamp") or "")


def _latest_event(events: list[dict], kind: str, name: str, uid: str | None, warning_only: bool) -> dict | None:
    mine = [e for e in events
            if (e.get("involvedObject") or {}).get("kind") == kind
            and (e.get("involvedObject") or {}).get("name") == name
            and (uid is None or (e.get("involvedObject") or {}).get("uid") in (None, uid))
            and (not warning_only or e.get("type") == "Warning")]
    if not mine:
        return None
    latest = max(mine, key=_event_time)
    # The kubelet follows each failed pull ("Failed to pull image ...: <cause>") with bare summaries
    # ("Error: ErrImagePull", then "Error: ImagePullBackOff" on every back-off): the cause is in the
    # latest event of the same reason that is not such a summary.
    if _SUMMARY.match(latest.get("message") or ""):
        causes = [e for e in mine if e.get("reason") == latest.get("reason")
                  and not _SUMMARY.match(e.get("message") or "")]
        if causes:
            return max(causes, key=_event_time)
    return latest


_SUMMARY = re.compile(r"Error: \w+$")


def _pod_state(obj: dict) -> str:
    status = obj.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"]
    return status.get("phase") or "Unknown"


class WaitBlockers(KubectlFact):
    """What keeps a rollout from finishing, read in one command: every pod named
    ``<prefix>...`` that is not Ready and every PVC named ``<pvc_prefix><ordinal>`` that is not
    Bound, each with its latest Warning event (a PVC's latest event of any type: the PV
    controller's ExternalProvisioning is a Normal one) and what to do about it."""

    def __init__(self, namespace: str, pod_prefixes: tuple[str, ...] | list[str], pvc_prefix: str):
        self.namespace, self.pod_prefixes, self.pvc_prefix = namespace, tuple(pod_prefixes), pvc_prefix

    def build(self) -> str:
        return f"{KUBECTL} get pods,pvc,events -n {quote(self.namespace)} -o json"

    def process(self, result: FactResult) -> list[Blocker]:
        items = _items(_json(result, "pods, PVCs and events"))
        events = [o for o in items if o.get("kind") == "Event"]
        out = []
        for obj in items:
            meta = obj.get("metadata") or {}
            name, uid = meta.get("name", ""), meta.get("uid")
            if obj.get("kind") == "Pod" and name.startswith(self.pod_prefixes):
                if parse_pod(obj).ready or (obj.get("status") or {}).get("phase") == "Succeeded":
                    continue
                ev = _latest_event(events, "Pod", name, uid, warning_only=True)
                state = _pod_state(obj)
                if state == "Running":
                    state = "Running, not Ready"
                waiting = next(((cs.get("state") or {}).get("waiting") for cs in
                                (obj.get("status") or {}).get("containerStatuses") or []
                                if (cs.get("state") or {}).get("waiting")), None) or {}
                reason = ev.get("reason") if ev else waiting.get("reason")
                message = ev.get("message") if ev else waiting.get("message")
            elif obj.get("kind") == "PersistentVolumeClaim":
                tail = name[len(self.pvc_prefix):]
                if not (name.startswith(self.pvc_prefix) and tail.isdigit()):
                    continue
                state = (obj.get("status") or {}).get("phase") or "Unknown"
                if state == "Bound":
                    continue
                ev = (_latest_event(events, "PersistentVolumeClaim", name, uid, warning_only=True)
                      or _latest_event(events, "PersistentVolumeClaim", name, uid, warning_only=False))
                reason, message = (ev.get("reason"), ev.get("message")) if ev else (None, None)
            else:
                continue
            out.append(Blocker("pod" if obj["kind"] == "Pod" else "pvc", name, state, reason,
                               " ".join((message or "").split()) or None,
                               fix_for(reason, message, self.namespace)))
        return sorted(out, key=lambda b: (b.kind, _natural(b.name)))


def describe_blockers(blockers: list[Blocker]) -> list[str]:
    """One line per kind of trouble: blockers with the same state, reason and fix share a line
    (a stopped NFS server fails every pod's readiness probe alike), named and counted, with the
    first one's message: `pvc test-statefulset-6 Pending: ProvisioningFailed: <message> -> <fix>`."""
    groups: dict[tuple, list[Blocker]] = {}
    for b in blockers:
        groups.setdefault((b.kind, b.state, b.reason, b.fix), []).append(b)
    lines = []
    for (kind, state, reason, fix), members in groups.items():
        names = ", ".join(m.name for m in members)
        line = f"{kind} {names} {state}" if len(members) == 1 else f"{kind}s {names} ({len(members)}) {state}"
        if reason:
            line += f": {reason}: {members[0].message or ''}".rstrip()
        if fix:
            line += f" -> {fix}"
        lines.append(line)
    return lines


# ---- rollout progress ----------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """Where a Deployment's or StatefulSet's rollout stands; ``done`` as ``kubectl rollout status``
    decides it (its status viewers), so labkit can poll it and say ready/desired meanwhile."""
    kind: str
    name: str
    desired: int
    ready: int
    done: bool


def statefulset_rollout(sts: StatefulSetState | None) -> Rollout | None:
    """The rollout of a StatefulSet already read (None while it does not exist)."""
    return None if sts is None else Rollout("statefulset", sts.name, sts.replicas, sts.ready_replicas, sts.settled)


def rollout_of(obj: dict) -> Rollout:
    kind, meta = obj.get("kind", ""), obj.get("metadata") or {}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    desired = spec.get("replicas", 1)
    if kind == "StatefulSet":
        return statefulset_rollout(parse_statefulset(obj))
    if kind != "Deployment":
        raise OperationError(f"a rollout is a Deployment's or a StatefulSet's, not a {kind or 'nameless'} object's")
    updated = status.get("updatedReplicas") or 0
    done = ((meta.get("generation") or 0) <= (status.get("observedGeneration") or 0)
            and updated >= desired
            and (status.get("replicas") or 0) <= updated          # no old replicas left
            and (status.get("availableReplicas") or 0) >= updated)
    return Rollout("deployment", meta.get("name", ""), desired, status.get("readyReplicas") or 0, done)


class RolloutFact(KubectlFact):
    """``kubectl get <kind>/<name>`` -> ``Rollout``; None while the object does not exist yet."""

    ok_exit_codes = (0, 1)

    def __init__(self, kind: str, name: str, namespace: str):
        if kind not in ("deployment", "statefulset"):
            raise OperationError(f"a rollout is a deployment's or a statefulset's, not a {kind}'s")
        self.kind, self.name, self.namespace = kind, name, namespace

    def build(self) -> str:
        return f"{KUBECTL} get {quote(self.kind + '/' + self.name)} -n {quote(self.namespace)} -o json"

    def process(self, result: FactResult) -> Rollout | None:
        if result.exited != 0:
            if "NotFound" in result.stderr:
                return None
            raise OperationError(f"kubectl get {self.kind}/{self.name} failed: "
                                 f"{(result.stderr.strip() or 'no output').splitlines()[-1]}")
        return rollout_of(_json(result, self.kind))


def stuck(blockers: list[Blocker], first_seen: dict[tuple, float], now: float, after: float) -> list[Blocker]:
    """Blockers with a known cause (one labkit has a fix for) seen unchanged for ``after`` seconds.
    ``first_seen`` (blocker key -> time) is updated in place: what went away is forgotten."""
    keys = {(b.kind, b.name, b.reason): b for b in blockers if b.fix}
    for key in list(first_seen):
        if key not in keys:
            del first_seen[key]
    for key in keys:
        first_seen.setdefault(key, now)
    return [b for key, b in keys.items() if now - first_seen[key] >= after]
