"""The inventory (hosts.yaml): pydantic schema, loading, and the accessors the rest of labkit uses.

``load(path)`` reads and validates the whole file before any host is touched.
Every problem becomes one ``InventoryError`` naming the file, the dotted
field (``hosts[1].address``), the YAML line where known, and what is allowed.
"""
from __future__ import annotations

import ipaddress
import os
import re
import reprlib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator)

from . import validate as v

_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxdict, _short.maxstring = 2, 4, 4, 60
MAX_BYTES = 1 << 20  # a hosts.yaml is a few KB; refuse anything absurd before parsing it
from .errors import InventoryError

Role = Literal["control-plane", "registry", "nfs-server", "worker"]
ROLES = ("control-plane", "registry", "nfs-server", "worker")

HostName = Annotated[str, AfterValidator(v.hostname)]
Address = Annotated[str, AfterValidator(v.address)]
Port = Annotated[int, AfterValidator(v.port)]
AbsPath = Annotated[str, AfterValidator(v.abs_path)]
ImageRef = Annotated[str, AfterValidator(v.image_ref)]
ImageTag = Annotated[str, AfterValidator(v.image_tag)]
Label = Annotated[str, AfterValidator(v.dns1123_label)]
# Pod names are "<set>-<ordinal>" and must stay a 63-char label; leave room for the ordinal.
StatefulSetName = Annotated[str, AfterValidator(lambda s: v.dns1123_label(s, max_len=52))]


class _Model(BaseModel):
    # strict: YAML gives native types; "22" for a port or "yes" for a bool is a mistake to report.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SSH(_Model):
    user: Annotated[str, AfterValidator(v.username)] = "root"
    port: Port = 22
    key: Annotated[str, AfterValidator(v.local_path)] | None = None
    sudo: bool = False
    known_hosts: Annotated[str, AfterValidator(v.local_path)] = ".labkit/known_hosts"
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 10

    @field_validator("key", "known_hosts")
    @classmethod
    def _relative_to_inventory(cls, value, info: ValidationInfo):
        return _from_inventory_dir(value, info)


def _from_inventory_dir(value: str | None, info: ValidationInfo) -> str | None:
    """Relative paths are relative to the inventory file's directory, not the cwd."""
    if value is None:
        return value
    base = (info.context or {}).get("base_dir")
    if base is not None and not os.path.isabs(value):
        value = os.path.normpath(os.path.join(base, value))
    return value


class Host(_Model):
    name: HostName
    address: Address
    roles: Annotated[list[Role], Field(min_length=1)]
    runtime: Literal["docker", "containerd"] = "docker"

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("roles are repeated: list each role once")
        return value


class Registry(_Model):
    image: ImageRef = "registry:2"
    container: Annotated[str, AfterValidator(v.container_name)] = "registry"
    port: Port = 5000
    data_dir: AbsPath = "/data/registry"


class NFS(_Model):
    server: Literal["kernel", "ganesha"] = "kernel"
    export: AbsPath = "/nfsdata"
    clients: Annotated[str, AfterValidator(v.nfs_clients)] = "*"
    options: Annotated[list[str], Field(min_length=1), AfterValidator(v.nfs_options)] = ["rw", "sync", "no_root_squash"]


class WebImage(_Model):
    repository: Annotated[str, AfterValidator(v.repository)]
    base: ImageRef = "httpd:2.4"
    tags: Annotated[list[ImageTag], Field(min_length=1)]

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("tags are repeated: list each tag once")
        return value


class Images(_Model):
    web: WebImage
    # true: the lab is offline; deploy takes the provisioner from the lab registry (`invoke
    # mirror-images` copies it there, and `invoke up` runs it)
    mirror: bool = False


class Provisioner(_Model):
    name: Annotated[str, AfterValidator(v.qualified_name)] = "k8s-sigs.io/nfs-subdir-external-provisioner"
    image: ImageRef = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
    archive_on_delete: bool = False


class StorageClass(_Model):
    name: Annotated[str, AfterValidator(v.dns1123_subdomain)]
    reclaim_policy: Literal["Retain", "Delete"] = "Retain"


class Service(_Model):
    name: Annotated[str, AfterValidator(v.dns1035_label)]
    port: Port = 80


class StatefulSet(_Model):
    name: StatefulSetName
    replicas: Annotated[int, Field(ge=0, le=1000)]
    image_tag: ImageTag
    claim_template: Label
    mount_path: AbsPath
    storage: Annotated[str, AfterValidator(v.quantity)] = "100Mi"
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] = "ReadWriteOnce"


class Rollout(_Model):
    replicas: Annotated[int, Field(ge=0, le=1000)]
    image_tag: ImageTag
    partition: Annotated[int, Field(ge=0, le=1000)] = 0


# ---- kubernetes.cluster: what `invoke setup-cluster` makes with kubeadm -------------------------

# The phases `kubeadm init --help` lists (v1.37.2): what skip_phases may name.
KUBEADM_INIT_PHASES = (
    "preflight", "certs", "certs/ca", "certs/apiserver", "certs/apiserver-kubelet-client",
    "certs/front-proxy-ca", "certs/front-proxy-client", "certs/etcd-ca", "certs/etcd-server",
    "certs/etcd-peer", "certs/etcd-healthcheck-client", "certs/apiserver-etcd-client", "certs/sa",
    "kubeconfig", "kubeconfig/admin", "kubeconfig/super-admin", "kubeconfig/kubelet",
    "kubeconfig/controller-manager", "kubeconfig/scheduler", "etcd", "etcd/local", "control-plane",
    "control-plane/apiserver", "control-plane/controller-manager", "control-plane/scheduler",
    "kubelet-start", "wait-control-plane", "upload-config", "upload-config/kubeadm",
    "upload-config/kubelet", "upload-certs", "mark-control-plane", "bootstrap-token",
    "kubelet-finalize", "kubelet-finalize/enable-client-cert-rotation", "addon", "addon/coredns",
    "addon/kube-proxy", "show-join-command",
)
# The controller-manager gives each node a /24 of the pod subnet (kubeadm's default node mask).
NODE_CIDR_PREFIX = 24
# kube-apiserver refuses a service range larger than 2^20 addresses.
LARGEST_SERVICE_PREFIX = 12
_KUBE_VERSION_RE = re.compile(r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def _kube_version(value: str) -> str:
    if not _KUBE_VERSION_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes release: use vMAJOR.MINOR.PATCH, e.g. v1.37.2 "
                         "(labels such as 'stable' need the internet)")
    return value


def _ipv4_network(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form, e.g. 10.244.0.0/16 ({exc})") from None


def _pod_subnet(value: str) -> str:
    net = ipaddress.IPv4Network(_ipv4_network(value))
    if net.prefixlen > NODE_CIDR_PREFIX:
        raise ValueError(f"{value!r} is smaller than one node's share: each node gets a /{NODE_CIDR_PREFIX} of "
                         f"the pod subnet, so use a /{NODE_CIDR_PREFIX} or larger (e.g. 10.244.0.0/16)")
    return str(net)


def _service_subnet(value: str) -> str:
    net = ipaddress.IPv4Network(_ipv4_network(value))
    if net.prefixlen < LARGEST_SERVICE_PREFIX:
        raise ValueError(f"{value!r} is too large: kube-apiserver takes at most a /{LARGEST_SERVICE_PREFIX} "
                         "(e.g. 10.96.0.0/12)")
    return str(net)


def _image_repository(value: str) -> str:
    # imageRepository is right when kubeadm's image names under it are image references.
    try:
        v.image_ref(f"{value}/kube-apiserver:v1.0.0")
    except ValueError:
        raise ValueError(f"{value!r} is not an image repository: use registry[:port][/path] without a tag, "
                         "e.g. 192.168.20.6:5000/k8s or registry.k8s.io") from None
    return value


def _names_from(values: list[str], bad: list[str], unknown: str, repeated: str) -> list[str]:
    """A list of kubeadm names: none unknown (``bad``, named in ``unknown``'s {names}), none repeated."""
    if bad:
        raise ValueError(unknown.format(names=", ".join(map(repr, bad))))
    if len(set(values)) != len(values):
        raise ValueError(f"{repeated} are repeated: list each once")
    return values


def _skip_phases(values: list[str]) -> list[str]:
    return _names_from(values, [p for p in values if p not in KUBEADM_INIT_PHASES],
                       "unknown kubeadm phase(s) {names}: use names from `kubeadm init --help`, e.g. preflight, "
                       "addon/coredns, addon/kube-proxy", "phases")


_PREFLIGHT_CHECK = re.compile(r"^[A-Za-z][A-Za-z0-9.-]{0,62}$")


def _preflight_checks(values: list[str]) -> list[str]:
    return _names_from(values, [c for c in values if not _PREFLIGHT_CHECK.match(c)],
                       "not a kubeadm preflight check name: {names} (kubeadm names them in its errors, e.g. "
                       "[ERROR SystemVerification]; or 'all')", "checks")


class Kubelet(_Model):
    fail_swap_on: bool = True      # false: the kubelet runs on a host with swap on
    fail_cgroup_v1: bool = True    # false: the kubelet runs on cgroup v1 (refused by default since 1.35)
    # false: no disk-pressure eviction and no image GC, for hosts sharing one disk (the twin's)
    disk_eviction: bool = True


class KubeProxy(_Model):
    # false: kube-proxy leaves nf_conntrack_max as it is (read-only inside a container's namespace)
    set_conntrack_max: bool = True


class Cluster(_Model):
    create: bool = False           # true: `invoke up` starts with setup-cluster
    version: Annotated[str, AfterValidator(_kube_version)] = "v1.37.2"
    pod_subnet: Annotated[str, AfterValidator(_pod_subnet)] = "10.244.0.0/16"
    service_subnet: Annotated[str, AfterValidator(_service_subnet)] = "10.96.0.0/12"
    image_repository: Annotated[str, AfterValidator(_image_repository)] | None = None  # offline labs
    cni_manifest: Annotated[str, AfterValidator(v.local_path)] | None = None  # instead of host-gw
    skip_phases: Annotated[list[str], AfterValidator(_skip_phases)] = []
    # kubeadm's preflight runs, and these checks only warn (nodeRegistration.ignorePreflightErrors)
    ignore_preflight_errors: Annotated[list[str], AfterValidator(_preflight_checks)] = []
    kubelet: Kubelet = Kubelet()
    kube_proxy: KubeProxy = KubeProxy()

    @field_validator("cni_manifest")
    @classmethod
    def _relative_to_inventory(cls, value, info: ValidationInfo):
        return _from_inventory_dir(value, info)


class Kubernetes(_Model):
    namespace: Label = "default"
    # seconds a rollout wait goes on while the same known cause blocks it (FailedMount, ...)
    stuck_after: Annotated[int, Field(ge=10, le=3600)] = 60
    provisioner: Provisioner = Provisioner()
    storage_class: StorageClass
    service: Service
    statefulset: StatefulSet
    rollout: Rollout
    cluster: Cluster = Cluster()


class Inventory(_Model):
    ssh: SSH = SSH()
    hosts: Annotated[list[Host], Field(min_length=1)]
    registry: Registry = Registry()
    nfs: NFS = NFS()
    images: Images
    kubernetes: Kubernetes
    # Where it was loaded from (set by parse(); not part of the YAML schema).
    _path: str | None = PrivateAttr(default=None)

    @property
    def path(self) -> str | None:
        return self._path

    # ---- accessors -------------------------------------------------------
    def _one(self, role: str) -> Host:
        return next(h for h in self.hosts if role in h.roles)

    @property
    def control_plane(self) -> Host:
        return self._one("control-plane")

    @property
    def registry_host(self) -> Host:
        return self._one("registry")

    @property
    def nfs_server(self) -> Host:
        return self._one("nfs-server")

    @property
    def workers(self) -> list[Host]:
        return [h for h in self.hosts if "worker" in h.roles]

    def open_root_export(self) -> str | None:
        """A warning when the export gives root to anyone (no_root_squash open to *), with the fix:
        the lab's own subnet (the /24s of its hosts' IPv4 addresses) as nfs.clients."""
        if self.nfs.clients != "*" or "no_root_squash" not in self.nfs.options:
            return None
        nets = sorted({str(ipaddress.ip_network(f"{h.address}/24", strict=False)) for h in self.hosts
                       if _is_ipv4(h.address)}) or ["<your lab subnet>"]
        return (f"nfs: {self.nfs.export} is exported to * with no_root_squash: any machine that reaches "
                f"{self.nfs_server.address} can write to it as root. Set nfs.clients: "
                f"{nets[0] if len(nets) == 1 else '<one of ' + ', '.join(nets) + '>'} in {self.path} to limit it to the lab")

    @property
    def registry_address(self) -> str:
        addr = self.registry_host.address
        if ":" in addr:  # IPv6 literal needs brackets before the port
            addr = f"[{addr}]"
        return f"{addr}:{self.registry.port}"

    def image_ref(self, tag: str) -> str:
        return f"{self.registry_address}/{self.images.web.repository}:{tag}"


# ---- loading ---------------------------------------------------------------

def _node_lines(node, prefix=(), out=None, dups=None, seen=None):
    """Map field paths (tuples of keys/indexes) to 1-based YAML line numbers,
    and collect duplicate mapping keys (PyYAML silently keeps the last one)."""
    if out is None:
        out, dups, seen = {}, [], set()
    out.setdefault(prefix, node.start_mark.line + 1)
    if id(node) in seen:
        return out, dups  # an alias: walked once already (and an alias bomb never explodes here)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value
            path = prefix + (key,)
            if key in seen:
                dups.append((path, key_node.start_mark.line + 1))
            seen.add(key)
            out[path] = key_node.start_mark.line + 1
            _node_lines(value_node, path, out, dups, seen)
            out[path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, prefix + (i,), out, dups, seen)
    return out, dups


def field_name(loc) -> str:
    """('hosts', 1, 'address') -> 'hosts[1].address'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _line_for(lines: dict, loc: tuple) -> int | None:
    # The longest known prefix: a missing field is reported at its parent's line.
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def _model_at(loc: tuple):
    """The pydantic model class at a field path, or None (for 'unknown field' messages)."""
    model = Inventory
    for part in loc:
        if isinstance(part, int):
            continue  # list index: the item model was taken with the list field
        info = model.model_fields.get(part) if model else None
        if info is None:
            return None
        model = None
        for t in (info.annotation, *getattr(info.annotation, "__args__", ())):
            for u in (t, *getattr(t, "__args__", ())):
                if isinstance(u, type) and issubclass(u, BaseModel):
                    model = u
    return model


def _message(err: dict) -> str:
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"][:-1]))
        return "unknown field" + (f"; allowed fields: {', '.join(model.model_fields)}" if model else "")
    if kind == "missing":
        return "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind.endswith("_type"):
        msg += f" (got {_short.repr(err.get('input'))})"  # bounded: the input may be an alias bomb
    return msg


def _cross_checks(inv: Inventory) -> list[tuple[tuple, str]]:
    problems = []
    for role in ("control-plane", "registry", "nfs-server"):
        having = [h.name for h in inv.hosts if role in h.roles]
        if len(having) != 1:
            found = f"found {len(having)}" + (f" ({', '.join(having)})" if having else "")
            problems.append((("hosts",), f"exactly one host must have role {role!r}; {found}"))
    if not inv.workers:
        problems.append((("hosts",), "at least one host must have role 'worker' (pods run on workers)"))
    for attr in ("name", "address"):
        first = {}
        for i, h in enumerate(inv.hosts):
            val = getattr(h, attr)
            if val in first:
                problems.append((("hosts", i, attr),
                                 f"duplicate host {attr} {val!r} (also hosts[{first[val]}].{attr}): each host needs its own"))
            else:
                first[val] = i
    tags = inv.images.web.tags
    k = inv.kubernetes
    for loc, tag in ((("kubernetes", "statefulset", "image_tag"), k.statefulset.image_tag),
                     (("kubernetes", "rollout", "image_tag"), k.rollout.image_tag)):
        if tag not in tags:
            problems.append((loc, f"tag {tag!r} is not built: allowed are images.web.tags ({', '.join(tags)})"))
    if k.rollout.partition > k.rollout.replicas:
        problems.append((("kubernetes", "rollout", "partition"),
                         f"partition {k.rollout.partition} is above rollout.replicas {k.rollout.replicas}: "
                         f"use 0-{k.rollout.replicas}"))
    return problems + _cluster_checks(inv)


def _cluster_checks(inv: Inventory) -> list[tuple[tuple, str]]:
    """The pod and service subnets must not collide with each other or with the hosts."""
    c = inv.kubernetes.cluster
    at = ("kubernetes", "cluster")
    pods, services = ipaddress.IPv4Network(c.pod_subnet), ipaddress.IPv4Network(c.service_subnet)
    problems = []
    if pods.overlaps(services):
        problems.append((at + ("service_subnet",), f"{c.service_subnet} overlaps pod_subnet {c.pod_subnet}: "
                                                   "give pods and services separate ranges"))
    for i, h in enumerate(inv.hosts):
        try:
            address = ipaddress.ip_address(h.address)
        except ValueError:
            continue  # a DNS name: its address is the host's business
        for name, net in (("pod_subnet", pods), ("service_subnet", services)):
            if address in net:
                problems.append((at + (name,), f"{net} contains hosts[{i}].address {h.address}: pick a range "
                                               "outside the hosts' network"))
    nodes = 2 ** (NODE_CIDR_PREFIX - pods.prefixlen)
    if len(inv.hosts) > nodes:
        problems.append((at + ("pod_subnet",), f"{c.pod_subnet} holds {nodes} node range(s) of "
                                               f"/{NODE_CIDR_PREFIX}, for {len(inv.hosts)} hosts: use a larger one"))
    return problems


def parse(text: str, path: str | os.PathLike = "<inventory>", base_dir: str | None = None) -> Inventory:
    """Validate inventory YAML text. ``path`` is only used in messages."""
    path = str(path)
    if len(text) > MAX_BYTES:
        raise InventoryError(path, [(None, None, f"the file is {len(text)} bytes: an inventory is at most "
                                                 f"{MAX_BYTES} bytes (is this the right file?)")])
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InventoryError(path, [(None, line, f"not valid YAML: {exc.problem or exc}"
                                                 + (f" ({exc.context})" if exc.context else ""))]) from None
    except yaml.YAMLError as exc:
        raise InventoryError(path, [(None, None, f"not valid YAML: {exc}")]) from None
    if data is None:
        raise InventoryError(path, [(None, None, "the file is empty: it needs ssh, hosts, registry, nfs, images "
                                                 "and kubernetes sections (see hosts.yaml)")])
    if not isinstance(data, dict):
        raise InventoryError(path, [(None, root.start_mark.line + 1, f"the top level must be a mapping of sections, got {type(data).__name__}")])
    lines, dups = _node_lines(root)
    if dups:
        raise InventoryError(path, [(field_name(loc), line, "key given twice: keep one") for loc, line in dups])
    context = {"base_dir": base_dir if base_dir is not None else os.path.dirname(os.path.abspath(path))}
    try:
        inv = Inventory.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            problems.append((field_name(loc) or None, _line_for(lines, loc), _message(err)))
        raise InventoryError(path, problems) from None
    problems = _cross_checks(inv)
    if problems:
        raise InventoryError(path, [(field_name(loc), _line_for(lines, loc), msg) for loc, msg in problems])
    inv._path = path
    return inv


def load(path: str | os.PathLike) -> Inventory:
    """Read and validate the inventory file; raise ``InventoryError`` on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(p, [(None, None, "file not found: pass the inventory with -i/--inventory "
                                              "or set INVOKE_LAB_INVENTORY (default ./hosts.yaml)")]) from None
    except IsADirectoryError:
        raise InventoryError(p, [(None, None, "is a directory, not an inventory file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(p, [(None, None, f"cannot read the file: {exc}")]) from None
    return parse(text, p, base_dir=str(p.resolve().parent))
