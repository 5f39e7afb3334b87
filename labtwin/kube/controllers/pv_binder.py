"""persistentvolume-controller: binds claims to volumes, marks volumes Released, and announces
claims that wait for an external provisioner (pkg/controller/volume/persistentvolume)."""
from __future__ import annotations

import logging
import re

from .common import ApiErrorT, deepcopy, is_terminating, name_of, ns_of, uid_of

log = logging.getLogger(__name__)

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 0.001}

ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"


def quantity(q) -> float:
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q).strip())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"invalid quantity {q!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def claim_class(pvc: dict) -> str:
    return pvc.get("spec", {}).get("storageClassName") or ""


def external_provisioning_message(provisioner: str) -> str:
    return (f"Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by "
            f"the system administrator. If volume creation is delayed, please verify that the provisioner is running "
            f"and correctly registered.")


def find_volume(pvc: dict, pvs: list[dict]) -> dict | None:
    """findBestMatchForClaim: a volume pre-bound to this claim, else the smallest fitting Available one."""
    spec = pvc.get("spec", {})
    want = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage", "0"))
    modes = set(spec.get("accessModes") or [])
    best = None
    for pv in pvs:
        ref = pv.get("spec", {}).get("claimRef")
        if ref and ref.get("name") == name_of(pvc) and ref.get("namespace") == ns_of(pvc) and \
                ref.get("uid") in (None, "", uid_of(pvc)):
            return pv
    for pv in pvs:
        ps = pv.get("spec", {})
        if ps.get("claimRef") or is_terminating(pv):
            continue
        if (ps.get("storageClassName") or "") != claim_class(pvc):
            continue
        if not modes <= set(ps.get("accessModes") or []):
            continue
        if ps.get("volumeMode", "Filesystem") != spec.get("volumeMode", "Filesystem"):
            continue
        cap = quantity((ps.get("capacity") or {}).get("storage", "0"))
        if cap < want:
            continue
        sel = spec.get("selector")
        if sel is not None:
            from .common import selector_matches
            if not selector_matches(sel, pv.get("metadata", {}).get("labels")):
                continue
        if best is None or cap < quantity(best["spec"]["capacity"]["storage"]):
            best = pv
    return best


class PersistentVolumeBinder:
    name = "persistentvolume-controller"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.recorder = mgr.recorder(self.name)
        self.queue = mgr.queue(self.name, self.sync)
        inf = mgr.informers
        inf["persistentvolumeclaims"].add_handler(lambda t, o, old: self.queue.add(("claim", ns_of(o), name_of(o))))
        inf["persistentvolumes"].add_handler(self._pv_changed)
        inf["storageclasses"].add_handler(lambda *_: [self.queue.add(k) for k in self.resync_keys()])

    def _pv_changed(self, etype, pv, old):
        self.queue.add(("volume", "", name_of(pv)))
        ref = pv.get("spec", {}).get("claimRef")
        if ref:
            self.queue.add(("claim", ref.get("namespace", ""), ref.get("name", "")))
        else:  # a new Available volume may fit a pending claim
            for c in self.mgr.informers["persistentvolumeclaims"].items():
                if not c.get("spec", {}).get("volumeName"):
                    self.queue.add(("claim", ns_of(c), name_of(c)))

    def resync_keys(self):
        inf = self.mgr.informers
        return ([("claim", ns_of(c), name_of(c)) for c in inf["persistentvolumeclaims"].items()] +
                [("volume", "", name_of(v)) for v in inf["persistentvolumes"].items()])

    def sync(self, key):
        kind, ns, name = key
        if kind == "claim":
            pvc = self.mgr.informers["persistentvolumeclaims"].get(ns, name)
            if pvc is not None and not is_terminating(pvc):
                self.sync_claim(deepcopy(pvc))
        else:
            pv = self.mgr.informers["persistentvolumes"].get("", name)
            if pv is not None:
                self.sync_volume(deepcopy(pv))

    # -- claims ------------------------------------------------------------------------------------
    def sync_claim(self, pvc: dict) -> None:
        inf = self.mgr.informers
        vname = pvc.get("spec", {}).get("volumeName")
        if vname:
            pv = inf["persistentvolumes"].get("", vname)
            if pv is None:
                if pvc.get("status", {}).get("phase") == "Bound":
                    self._claim_phase(pvc, "Lost")
                    self.recorder.event(pvc, "Warning", "ClaimLost",
                                        "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
                return
            ref = pv.get("spec", {}).get("claimRef") or {}
            if ref.get("uid") == uid_of(pvc):
                if pvc.get("status", {}).get("phase") != "Bound":
                    self._claim_bound(pvc, pv)
            elif not ref:
                self._bind(pvc, deepcopy(pv), by_controller=False)
            return
        pv = find_volume(pvc, inf["persistentvolumes"].items())
        if pv is not None:
            self._bind(pvc, deepcopy(pv), by_controller=True)
            return
        cls = claim_class(pvc)
        sc = inf["storageclasses"].get("", cls) if cls else None
        if pvc.get("status", {}).get("phase") != "Pending":
            self._claim_phase(pvc, "Pending")
        if sc is None:
            if cls:
                self.recorder.event(pvc, "Warning", "ProvisioningFailed", f'storageclass.storage.k8s.io "{cls}" not found')
            else:
                self.recorder.event(pvc, "Normal", "FailedBinding",
                                    "no persistent volumes available for this claim and no storage class is set")
            return
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and \
                not (pvc["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE):
            self.recorder.event(pvc, "Normal", "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding")
            return
        prov = sc.get("provisioner", "")
        ann = pvc["metadata"].get("annotations") or {}
        if ann.get(ANN_STORAGE_PROVISIONER) != prov:
            try:
                self.client.patch("persistentvolumeclaims", name_of(pvc), {"metadata": {"annotations": {
                    ANN_STORAGE_PROVISIONER: prov, ANN_BETA_STORAGE_PROVISIONER: prov}}}, ns_of(pvc))
            except ApiErrorT as e:
                if not e.not_found:
                    raise
        self.recorder.event(pvc, "Normal", "ExternalProvisioning", external_provisioning_message(prov))

    def _bind(self, pvc: dict, pv: dict, by_controller: bool) -> None:
        """bindVolumeToClaim, then bindClaimToVolume: volume first so a crash leaves it pre-bound."""
        pv["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": ns_of(pvc), "name": name_of(pvc),
                                  "uid": uid_of(pvc), "apiVersion": "v1",
                                  "resourceVersion": pvc["metadata"].get("resourceVersion")}
        if by_controller:
            pv["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
        pv = self.client.update("persistentvolumes", pv)
        pv.setdefault("status", {})["phase"] = "Bound"
        pv = self.client.update_status("persistentvolumes", pv)
        pvc["spec"]["volumeName"] = name_of(pv)
        ann = pvc["metadata"].setdefault("annotations", {})
        ann[ANN_BIND_COMPLETED] = "yes"
        if by_controller:
            ann[ANN_BOUND_BY_CONTROLLER] = "yes"
        pvc = self.client.update("persistentvolumeclaims", pvc)
        self._claim_bound(pvc, pv)

    def _claim_bound(self, pvc: dict, pv: dict) -> None:
        pvc.setdefault("status", {}).update({"phase": "Bound", "accessModes": pv["spec"].get("accessModes"),
                                             "capacity": pv["spec"].get("capacity")})
        self.client.update_status("persistentvolumeclaims", pvc)

    def _claim_phase(self, pvc: dict, phase: str) -> None:
        pvc.setdefault("status", {})["phase"] = phase
        try:
            self.client.update_status("persistentvolumeclaims", pvc)
        except ApiErrorT as e:
            if not (e.not_found or e.conflict):
                raise

    # -- volumes -----------------------------------------------------------------------------------
    def sync_volume(self, pv: dict) -> None:
        ref = pv.get("spec", {}).get("claimRef")
        phase = pv.get("status", {}).get("phase")
        if not ref:
            if phase != "Available":
                self._volume_phase(pv, "Available")
            return
        if not ref.get("uid"):
            if phase != "Available":  # pre-bound to a claim not yet seen
                self._volume_phase(pv, "Available")
            return
        pvc = self.mgr.informers["persistentvolumeclaims"].get(ref.get("namespace", ""), ref.get("name", ""))
        if pvc is None:
            # a cache miss is not proof: ask the server before releasing, like the real controller
            pvc = self.client.get_or_none("persistentvolumeclaims", ref.get("name", ""), ref.get("namespace"))
        if pvc is not None and uid_of(pvc) == ref.get("uid"):
            if (pvc.get("spec", {}).get("volumeName") or name_of(pv)) == name_of(pv) and phase != "Bound":
                self._volume_phase(pv, "Bound")
            return
        if phase not in ("Released", "Failed"):
            self._volume_phase(pv, "Released")
            if pv["spec"].get("persistentVolumeReclaimPolicy", "Retain") == "Recycle":
                self.recorder.event(pv, "Warning", "VolumeFailedRecycle", "Recycle is not supported by this lab")

    def _volume_phase(self, pv: dict, phase: str) -> None:
        pv.setdefault("status", {})["phase"] = phase
        try:
            self.client.update_status("persistentvolumes", pv)
        except ApiErrorT as e:
            if not (e.not_found or e.conflict):
                raise
