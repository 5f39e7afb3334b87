"""Server-side defaulting and validation per kind, following the defaults (pkg/apis/*/v1/
defaults.go) and validation messages (pkg/apis/*/validation) of Kubernetes 1.32. Validation
failures are 422 Invalid Status objects with causes, as kubectl prints them."""

from __future__ import annotations

import json
import re

from . import resources as R
from .store import StatusError, selector_from_label_selector, labels_match

DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MSG_SUB = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
           "'-' or '.', and must start and end with an alphanumeric character (e.g. "
           "'example.com', regex used for validation is "
           "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
MSG_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
MSG_1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. "
            "'my-name',  or 'abc-123', regex used for validation is "
            "'[a-z]([-a-z0-9]*[a-z0-9])?')")

WITH_GENERATION = {"Deployment", "ReplicaSet", "StatefulSet"}
STATUS_RESET_ON_CREATE = {"Deployment", "ReplicaSet", "StatefulSet", "Service", "Pod",
                          "PersistentVolumeClaim", "PersistentVolume", "Namespace"}


class Invalid(Exception):
    def __init__(self):
        self.causes: list[tuple[str, str, str]] = []  # (reason, field, message)

    def add(self, reason: str, field: str, message: str) -> None:
        self.causes.append((reason, field, message))


def invalid_error(res: R.Resource, name: str, causes: list[tuple[str, str, str]]) -> StatusError:
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    texts = [f"{f}: {m}" for _, f, m in causes]
    body = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = {"name": name, "kind": res.kind,
               "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes]}
    if res.group:
        details["group"] = res.group
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {body}', details)


def _go_map(m: dict) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(m.items())) + "}"


# ---------------------------------------------------------------- defaulting

def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(p: dict | None) -> None:
    if not p:
        return
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)
    if "httpGet" in p:
        p["httpGet"].setdefault("path", "/")
        p["httpGet"].setdefault("scheme", "HTTP")


def _default_container(c: dict) -> None:
    c.setdefault("imagePullPolicy", _image_pull_policy(c.get("image", "")))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        fr = (e.get("valueFrom") or {}).get("fieldRef")
        if fr is not None:
            fr.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        _default_container(c)
    for v in spec.get("volumes") or []:
        for src in ("configMap", "secret"):
            if src in v:
                v[src].setdefault("defaultMode", 420)
        if "hostPath" in v:
            v["hostPath"].setdefault("type", "")
        if "nfs" in v:
            pass


def _default_template(t: dict) -> None:
    t.setdefault("metadata", {})
    default_pod_spec(t.setdefault("spec", {}))


def _qos(spec: dict) -> str:
    cs = spec.get("containers") or []
    reqs = [(c.get("resources") or {}) for c in cs]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    if all(r.get("limits") and set(r["limits"]) >= {"cpu", "memory"} and
           all(r.get("requests", {}).get(k, v) == v for k, v in r["limits"].items())
           for r in reqs):
        return "Guaranteed"
    return "Burstable"


def default(res: R.Resource, obj: dict) -> None:
    """Fill the defaults a real apiserver fills (called on create and on every update)."""
    kind = res.kind
    md = obj.setdefault("metadata", {})
    spec = obj.get("spec")
    if kind == "Pod":
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        # ServiceAccount admission
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("tolerations", [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}])
        st = obj.setdefault("status", {})
        st.setdefault("phase", "Pending")
        st.setdefault("qosClass", _qos(spec))
    elif kind == "StatefulSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {})
        us.setdefault("type", "RollingUpdate")
        if us["type"] == "RollingUpdate":
            us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        pol = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        pol.setdefault("whenDeleted", "Retain")
        pol.setdefault("whenScaled", "Retain")
        _default_template(spec.setdefault("template", {}))
        for t in spec.get("volumeClaimTemplates") or []:
            t.setdefault("apiVersion", "v1")
            t.setdefault("kind", "PersistentVolumeClaim")
            t.setdefault("metadata", {})
            t.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
            t.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        strat = spec.setdefault("strategy", {})
        strat.setdefault("type", "RollingUpdate")
        if strat["type"] == "RollingUpdate":
            ru = strat.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec.setdefault("template", {}))
    elif kind == "ReplicaSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        _default_template(spec.setdefault("template", {}))
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            if "port" in p:
                p.setdefault("targetPort", p["port"])
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif kind == "PersistentVolumeClaim":
        spec = obj.setdefault("spec", {})
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "PersistentVolume":
        spec = obj.setdefault("spec", {})
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md.get("name", "")
    elif kind in ("ClusterRoleBinding", "RoleBinding"):
        for s in obj.get("subjects") or []:
            if s.get("kind") in ("User", "Group"):
                s.setdefault("apiGroup", "rbac.authorization.k8s.io")
    elif kind == "Node":
        obj.setdefault("spec", {})
    elif kind == "Event" and res.group == "":
        obj.setdefault("reportingComponent", "")
        obj.setdefault("reportingInstance", "")
    if md.get("labels") == {} and kind != "Namespace":
        pass


def add_protection_finalizers(res: R.Resource, obj: dict) -> None:
    """The StorageObjectInUseProtection admission plugin: PVCs and PVs get their protection
    finalizer on create."""
    fin = {"PersistentVolumeClaim": "kubernetes.io/pvc-protection",
           "PersistentVolume": "kubernetes.io/pv-protection"}.get(res.kind)
    if fin:
        lst = obj["metadata"].setdefault("finalizers", [])
        if fin not in lst:
            lst.append(fin)


# ---------------------------------------------------------------- validation

def _name_rule(kind: str):
    if kind in ("Namespace",):
        return DNS1123_LABEL, MSG_LABEL
    if kind == "Service":
        return DNS1035_LABEL, MSG_1035
    if kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        return None, ""  # path segment names: anything without '/' or '%'
    return DNS1123_SUB, MSG_SUB


_QNAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
MSG_QNAME = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
             "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
             "'123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def _check_key(inv: Invalid, key: str, field: str) -> None:
    """A label or annotation key: optional DNS subdomain prefix, '/', qualified name."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUB.match(prefix)):
        inv.add("FieldValueInvalid", field, f'Invalid value: "{key}": prefix part {MSG_SUB}')
    if not name or len(name) > 63 or not _QNAME.match(name):
        inv.add("FieldValueInvalid", field, f'Invalid value: "{key}": {MSG_QNAME}')


def _check_labels(inv: Invalid, labels: dict | None, field: str) -> None:
    for k in labels or {}:
        _check_key(inv, k, field)
    for k, v in (labels or {}).items():
        if not isinstance(v, str):
            inv.add("FieldValueInvalid", field, f"Invalid value: {json.dumps(v)}: must be a "
                    "string")
            continue
        if len(v) > 63 or not re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", v):
            inv.add("FieldValueInvalid", field, f'Invalid value: "{v}": a valid label must be '
                    "an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                    "'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def _check_containers(inv: Invalid, spec: dict, field: str) -> None:
    cs = spec.get("containers")
    if not cs:
        inv.add("FieldValueRequired", f"{field}.containers", "Required value")
        return
    seen = set()
    for i, c in enumerate(cs):
        n = c.get("name", "")
        if not n:
            inv.add("FieldValueRequired", f"{field}.containers[{i}].name", "Required value")
        elif not DNS1123_LABEL.match(n):
            inv.add("FieldValueInvalid", f"{field}.containers[{i}].name",
                    f'Invalid value: "{n}": {MSG_LABEL}')
        elif n in seen:
            inv.add("FieldValueDuplicate", f"{field}.containers[{i}].name",
                    f'Duplicate value: "{n}"')
        seen.add(n)
        if not c.get("image"):
            inv.add("FieldValueRequired", f"{field}.containers[{i}].image", "Required value")


def _check_mounts(inv: Invalid, spec: dict, field: str) -> None:
    """Every volumeMount names a volume of the pod (real pods and pod templates; the
    StatefulSet template is not checked, its claims become volumes only in the pods)."""
    vols = {v.get("name") for v in spec.get("volumes") or []}
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in vols:
                    inv.add("FieldValueNotFound", f"{field}.{kind}[{i}].volumeMounts[{j}].name",
                            f'Not found: "{m.get("name")}"')


def _check_selector_template(inv: Invalid, spec: dict, kind: str) -> None:
    sel = spec.get("selector")
    labels = (spec.get("template", {}).get("metadata") or {}).get("labels") or {}
    if sel is None:
        # a nil selector selects nothing, so the template cannot match it either (as real)
        inv.add("FieldValueRequired", "spec.selector", "Required value")
        inv.add("FieldValueInvalid", "spec.template.metadata.labels",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template "
                "`labels`")
        return
    reqs = selector_from_label_selector(sel)
    if not reqs:
        inv.add("FieldValueInvalid", "spec.selector",
                f"Invalid value: {_selector_text(sel)}: empty selector is invalid for "
                f"{'statefulset' if kind == 'StatefulSet' else 'deployment'}")
        return
    if not labels_match(reqs, labels):
        inv.add("FieldValueInvalid", "spec.template.metadata.labels",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template "
                "`labels`")


def _selector_text(sel: dict) -> str:
    return "v1.LabelSelector{MatchLabels:" + _go_map(sel.get("matchLabels") or {}) + \
        ", MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"


def validate(res: R.Resource, obj: dict, old: dict | None = None) -> None:
    """Raise a 422 Invalid StatusError naming every failed field."""
    inv = Invalid()
    md = obj.get("metadata") or {}
    name = md.get("name", "")
    rule, msg = _name_rule(res.kind)
    if not name:
        inv.add("FieldValueRequired", "metadata.name", "Required value: name or generateName "
                "is required")
    elif rule is not None and (not rule.match(name) or len(name) > 253):
        inv.add("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {msg}')
    elif rule is None and ("/" in name or "%" in name or name in (".", "..")):
        inv.add("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": may not '
                "contain '/'")
    _check_labels(inv, md.get("labels"), "metadata.labels")
    for k in md.get("annotations") or {}:
        _check_key(inv, k, "metadata.annotations")
    for i, ref in enumerate(md.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                inv.add("FieldValueRequired" if f != "uid" else "FieldValueInvalid",
                        f"metadata.ownerReferences[{i}].{f}",
                        "Required value" if f != "uid" else
                        'Invalid value: "": uid must not be empty')
    spec = obj.get("spec") or {}
    kind = res.kind
    if kind == "Pod":
        _check_containers(inv, spec, "spec")
        _check_mounts(inv, spec, "spec")
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        _check_selector_template(inv, spec, kind)
        _check_containers(inv, spec.get("template", {}).get("spec") or {}, "spec.template.spec")
        if kind != "StatefulSet":
            _check_mounts(inv, spec.get("template", {}).get("spec") or {}, "spec.template.spec")
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            inv.add("FieldValueInvalid", "spec.replicas", f"Invalid value: {spec['replicas']}: "
                    "must be greater than or equal to 0")
        if kind == "StatefulSet":
            pol = spec.get("podManagementPolicy")
            if pol not in ("OrderedReady", "Parallel"):
                inv.add("FieldValueInvalid", "spec.podManagementPolicy",
                        f'Invalid value: "{pol}": must be \'OrderedReady\' or \'Parallel\'')
            us = spec.get("updateStrategy", {})
            if us.get("type") not in ("RollingUpdate", "OnDelete"):
                inv.add("FieldValueInvalid", "spec.updateStrategy.type",
                        f'Invalid value: "{us.get("type")}": must be \'RollingUpdate\' or '
                        "'OnDelete'")
            part = (us.get("rollingUpdate") or {}).get("partition", 0)
            if isinstance(part, int) and part < 0:
                inv.add("FieldValueInvalid", "spec.updateStrategy.rollingUpdate.partition",
                        f"Invalid value: {part}: must be greater than or equal to 0")
            rp = spec.get("template", {}).get("spec", {}).get("restartPolicy")
            if rp != "Always":
                inv.add("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                        f'Unsupported value: "{rp}": supported values: "Always"')
    elif kind == "Service":
        for i, p in enumerate(spec.get("ports") or []):
            if not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536:
                inv.add("FieldValueInvalid", f"spec.ports[{i}].port",
                        f"Invalid value: {p.get('port')}: must be between 1 and 65535, "
                        "inclusive")
        if not spec.get("ports") and spec.get("clusterIP") != "None":
            inv.add("FieldValueRequired", "spec.ports", "Required value")
    elif kind == "PersistentVolumeClaim":
        if not spec.get("accessModes"):
            inv.add("FieldValueRequired", "spec.accessModes", "Required value: at least 1 "
                    "access mode is required")
        if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
            inv.add("FieldValueRequired", "spec.resources[storage]", "Required value")
    elif kind == "PersistentVolume":
        if not (spec.get("capacity") or {}).get("storage"):
            inv.add("FieldValueRequired", "spec.capacity", "Required value")
        if not spec.get("accessModes"):
            inv.add("FieldValueRequired", "spec.accessModes", "Required value: at least 1 "
                    "access mode is required")
    elif kind == "StorageClass":
        if not obj.get("provisioner"):
            inv.add("FieldValueRequired", "provisioner", "Required value")
        if obj.get("reclaimPolicy") not in ("Delete", "Retain"):
            inv.add("FieldValueNotSupported", "reclaimPolicy",
                    f'Unsupported value: "{obj.get("reclaimPolicy")}": supported values: '
                    '"Delete", "Retain"')
    elif kind in ("ClusterRoleBinding", "RoleBinding"):
        if not (obj.get("roleRef") or {}).get("name"):
            inv.add("FieldValueRequired", "roleRef.name", "Required value")
    if old is not None:
        _validate_update(inv, res, obj, old)
    if inv.causes:
        raise invalid_error(res, name, inv.causes)


STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _validate_update(inv: Invalid, res: R.Resource, obj: dict, old: dict) -> None:
    kind = res.kind
    spec, ospec = obj.get("spec") or {}, old.get("spec") or {}
    if kind == "StatefulSet":
        a = {k: v for k, v in spec.items() if k not in STS_MUTABLE}
        b = {k: v for k, v in ospec.items() if k not in STS_MUTABLE}
        if a != b:
            inv.add("FieldValueForbidden", "spec", "Forbidden: updates to statefulset spec for "
                    "fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
    elif kind in ("Deployment", "ReplicaSet"):
        if spec.get("selector") != ospec.get("selector"):
            inv.add("FieldValueInvalid", "spec.selector",
                    f"Invalid value: {_selector_text(spec.get('selector') or {})}: field is "
                    "immutable")
    elif kind == "PersistentVolumeClaim":
        a = {k: v for k, v in spec.items() if k not in ("resources",
                                                        "volumeAttributesClassName")}
        b = {k: v for k, v in ospec.items() if k not in ("resources",
                                                         "volumeAttributesClassName")}
        # the binder fills volumeName of an unbound claim
        if not ospec.get("volumeName"):
            a.pop("volumeName", None)
            b.pop("volumeName", None)
        if a != b:
            inv.add("FieldValueForbidden", "spec", "Forbidden: spec is immutable after creation "
                    "except resources.requests and volumeAttributesClassName for bound claims")
    elif kind == "PersistentVolume":
        src = [k for k in spec if k in ("nfs", "hostPath", "local", "csi")]
        if any(spec.get(k) != ospec.get(k) for k in src):
            inv.add("FieldValueForbidden", "spec.persistentvolumesource",
                    "Forbidden: spec.persistentvolumesource is immutable after creation")
    elif kind == "Service":
        oip = ospec.get("clusterIP")
        if oip and spec.get("clusterIP") not in (None, "", oip):
            inv.add("FieldValueInvalid", "spec.clusterIPs[0]",
                    f'Invalid value: []string{{"{spec.get("clusterIP")}"}}: may not change '
                    "once set")
    elif kind == "StorageClass":
        for f in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
            if obj.get(f) != old.get(f):
                inv.add("FieldValueForbidden", f, "Forbidden: updates to " + f +
                        " are forbidden.")
    elif kind == "Pod":
        a, b = dict(spec), dict(ospec)
        for s in (a, b):
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
            s.pop("terminationGracePeriodSeconds", None)
        ac = [dict(c, image=None) for c in a.pop("containers", [])]
        bc = [dict(c, image=None) for c in b.pop("containers", [])]
        ai = [dict(c, image=None) for c in a.pop("initContainers", [])]
        bi = [dict(c, image=None) for c in b.pop("initContainers", [])]
        if a != b or ac != bc or ai != bi:
            inv.add("FieldValueForbidden", "spec", "Forbidden: pod updates may not change "
                    "fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                    "`spec.tolerations` (only additions to existing tolerations),"
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                    "previously negative)")
    elif kind in ("ClusterRoleBinding", "RoleBinding"):
        if obj.get("roleRef") != old.get("roleRef"):
            inv.add("FieldValueInvalid", "roleRef",
                    "Invalid value: rbac.RoleRef: cannot change roleRef")


# ---------------------------------------------------------------- unknown fields
# Known fields of the parts of each kind that people write by hand (the Go structs of 1.32);
# a None node accepts anything below it. fieldValidation=Strict (kubectl's default) turns an
# unknown field into 400 "strict decoding error: unknown field ...", Warn into a warning.

def _obj(*names: str, **nested) -> dict:
    return {**{n: None for n in names}, **nested}


def _list(node):
    return ("list", node)


_META = _obj("name", "generateName", "namespace", "labels", "annotations", "finalizers",
             "ownerReferences", "uid", "resourceVersion", "creationTimestamp",
             "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "managedFields",
             "selfLink")
_CONTAINER = _obj("name", "image", "command", "args", "workingDir", "ports", "envFrom", "env",
                  "resources", "resizePolicy", "volumeMounts", "volumeDevices", "livenessProbe",
                  "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
                  "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin",
                  "stdinOnce", "tty", "restartPolicy")
_POD_SPEC = _obj(
    "volumes", "activeDeadlineSeconds", "affinity", "automountServiceAccountToken",
    "dnsConfig", "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases",
    "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "imagePullSecrets",
    "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy", "priority",
    "priorityClassName", "readinessGates", "resourceClaims", "resources", "restartPolicy",
    "runtimeClassName", "schedulerName", "schedulingGates", "securityContext",
    "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints",
    containers=_list(_CONTAINER), initContainers=_list(_CONTAINER))
_TEMPLATE = {"metadata": _META, "spec": _POD_SPEC}
_PVC_SPEC = _obj("accessModes", "selector", "resources", "volumeName", "storageClassName",
                 "volumeMode", "dataSource", "dataSourceRef", "volumeAttributesClassName")
_TOP = ("apiVersion", "kind")
KNOWN_FIELDS: dict[str, dict] = {
    "Pod": _obj(*_TOP, "status", metadata=_META, spec=_POD_SPEC),
    "StatefulSet": _obj(*_TOP, "status", metadata=_META, spec=_obj(
        "replicas", "selector", "serviceName", "podManagementPolicy", "updateStrategy",
        "revisionHistoryLimit", "minReadySeconds", "persistentVolumeClaimRetentionPolicy",
        "ordinals", template=_TEMPLATE, volumeClaimTemplates=_list(
            _obj("apiVersion", "kind", "status", metadata=_META, spec=_PVC_SPEC)))),
    "Deployment": _obj(*_TOP, "status", metadata=_META, spec=_obj(
        "replicas", "selector", "strategy", "minReadySeconds", "revisionHistoryLimit",
        "paused", "progressDeadlineSeconds", template=_TEMPLATE)),
    "ReplicaSet": _obj(*_TOP, "status", metadata=_META, spec=_obj(
        "replicas", "minReadySeconds", "selector", template=_TEMPLATE)),
    "Service": _obj(*_TOP, "status", metadata=_META, spec=_obj(
        "ports", "selector", "clusterIP", "clusterIPs", "type", "externalIPs",
        "sessionAffinity", "loadBalancerIP", "loadBalancerSourceRanges", "externalName",
        "externalTrafficPolicy", "healthCheckNodePort", "publishNotReadyAddresses",
        "sessionAffinityConfig", "ipFamilies", "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts", "loadBalancerClass", "internalTrafficPolicy",
        "trafficDistribution")),
    "PersistentVolumeClaim": _obj(*_TOP, "status", metadata=_META, spec=_PVC_SPEC),
    "PersistentVolume": _obj(*_TOP, "spec", "status", metadata=_META),
    "StorageClass": _obj(*_TOP, "provisioner", "parameters", "reclaimPolicy", "mountOptions",
                         "allowVolumeExpansion", "volumeBindingMode", "allowedTopologies",
                         metadata=_META),
    "ServiceAccount": _obj(*_TOP, "secrets", "imagePullSecrets",
                           "automountServiceAccountToken", metadata=_META),
    "ClusterRole": _obj(*_TOP, "rules", "aggregationRule", metadata=_META),
    "Role": _obj(*_TOP, "rules", metadata=_META),
    "ClusterRoleBinding": _obj(*_TOP, "subjects", "roleRef", metadata=_META),
    "RoleBinding": _obj(*_TOP, "subjects", "roleRef", metadata=_META),
    "Namespace": _obj(*_TOP, "spec", "status", metadata=_META),
}


def unknown_fields(kind: str, obj: dict, drop: bool = False) -> list[str]:
    """Paths of unknown fields; drop=True also removes them (a decoder drops what it does not
    know unless it is strict)."""
    out: list[str] = []

    def walk(node, value, path: str) -> None:
        if node is None:
            return
        if isinstance(node, tuple):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    walk(node[1], item, f"{path}[{i}]")
            return
        if not isinstance(value, dict):
            return
        for k, v in list(value.items()):
            p = f"{path}.{k}" if path else k
            if k not in node:
                out.append(p)
                if drop:
                    del value[k]
            else:
                walk(node[k], v, p)
    walk(KNOWN_FIELDS.get(kind), obj, "")
    return out


# ---------------------------------------------------------------- quantities
# The apiserver stores a resource.Quantity and writes it back in canonical form
# (k8s.io/apimachinery/pkg/api/resource: CanonicalizeBytes): "1024Mi" reads back "1Gi",
# "0.5" reads back "500m". A manifest in another spelling therefore differs from the live object,
# as on a real cluster.

_BIN = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DEC = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QTY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def canonical_quantity(text) -> str:
    from fractions import Fraction
    if isinstance(text, (int, float)):
        text = str(text)
    if not isinstance(text, str):
        raise ValueError("quantity must be a string or number")
    m = _QTY.match(text.strip())
    if not m:
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    num, suffix = m.groups()
    value = Fraction(num)
    if suffix in _BIN:
        fmt, value = "bin", value * 1024 ** _BIN[suffix]
    elif suffix in _DEC:
        fmt, value = "dec", value * Fraction(10) ** _DEC[suffix]
    elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        fmt, value = "exp", value * Fraction(10) ** int(suffix[1:])
    else:
        raise ValueError(f"unable to parse quantity's suffix: {suffix!r}")
    if value < Fraction(1, 10 ** 9) and value > 0:  # rounds up to the smallest unit
        value = Fraction(1, 10 ** 9)
    if fmt == "bin" and (-1024 < value < 1024 or value.denominator != 1):
        fmt = "dec"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value == 0:
        return "0"
    if fmt == "bin":
        n, exp = int(value), 0
        while n % 1024 == 0 and exp < 6:
            n, exp = n // 1024, exp + 1
        suffix = {v: k for k, v in _BIN.items()}.get(exp, "")
        return f"{sign}{n}{suffix}"
    # decimal: integer mantissa, exponent a multiple of 3, as large as possible
    exp = 0
    while value.denominator != 1:
        value, exp = value * 10, exp - 1
    n = int(value)
    while n % 10 == 0 and n:
        n, exp = n // 10, exp + 1
    while exp % 3:
        n, exp = n * 10, exp - 1
    if fmt == "exp":
        return f"{sign}{n}" + (f"e{exp}" if exp else "")
    if exp > 18:
        n, exp = n * 10 ** (exp - 18), 18
    suffix = {v: k for k, v in _DEC.items()}[exp]
    return f"{sign}{n}{suffix}"


def _canon_map(m) -> None:
    if isinstance(m, dict):
        for k, v in m.items():
            m[k] = canonical_quantity(v)


def _canon_resources(r) -> None:
    if isinstance(r, dict):
        for part in ("requests", "limits"):
            _canon_map(r.get(part))


def _canon_pod_spec(spec) -> None:
    if not isinstance(spec, dict):
        return
    for kind in ("containers", "initContainers"):
        for c in spec.get(kind) or []:
            if isinstance(c, dict):
                _canon_resources(c.get("resources"))
    for v in spec.get("volumes") or []:
        if isinstance(v, dict) and isinstance(v.get("emptyDir"), dict) and \
                "sizeLimit" in v["emptyDir"]:
            v["emptyDir"]["sizeLimit"] = canonical_quantity(v["emptyDir"]["sizeLimit"])


def canonicalize_quantities(kind: str, obj: dict) -> None:
    """Rewrite the quantities of obj in canonical form (ValueError: not a quantity)."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        _canon_pod_spec(spec)
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        _canon_pod_spec((spec.get("template") or {}).get("spec"))
        for t in spec.get("volumeClaimTemplates") or []:
            _canon_resources((t.get("spec") or {}).get("resources"))
    elif kind == "PersistentVolumeClaim":
        _canon_resources(spec.get("resources"))
        _canon_map(st.get("capacity"))
    elif kind == "PersistentVolume":
        _canon_map(spec.get("capacity"))
    elif kind == "Node":
        _canon_map(st.get("capacity"))
        _canon_map(st.get("allocatable"))


# ---------------------------------------------------------------- warnings
BETA_SC = "volume.beta.kubernetes.io/storage-class"
_SC_WARNING = 'deprecated since v1.8; use "storageClassName" attribute instead'


def warnings(kind: str, obj: dict) -> list[str]:
    """Deprecation warnings a real apiserver returns (Warning headers kubectl prints), e.g.
    pkg/api/persistentvolumeclaim GetWarningsForPersistentVolumeClaim."""
    out = []
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    if kind in ("PersistentVolumeClaim", "PersistentVolume") and BETA_SC in ann:
        out.append(f"metadata.annotations[{BETA_SC}]: {_SC_WARNING}")
    if kind == "StatefulSet":
        for i, t in enumerate((obj.get("spec") or {}).get("volumeClaimTemplates") or []):
            if BETA_SC in ((t.get("metadata") or {}).get("annotations") or {}):
                out.append(f"spec.volumeClaimTemplates[{i}].metadata.annotations[{BETA_SC}]: "
                           f"{_SC_WARNING}")
    return out
