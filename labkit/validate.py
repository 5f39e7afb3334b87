"""Validators for every inventory value that reaches a shell or a manifest.

Each function takes the raw value and returns it (possibly normalised) or
raises ``ValueError`` with a message that says what is allowed. They are used
as pydantic ``AfterValidator``s by ``labkit.inventory`` and are plain functions
so other modules (and tests) can call them directly.
"""
from __future__ import annotations

import ipaddress
import os
import posixpath
import re

# RFC 1123 label: what a host name (and a Kubernetes node name) may be.
_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_LABEL_RE = re.compile(rf"^{_LABEL}$")
# DNS-1035 label: Kubernetes Service names must start with a letter.
_DNS1035_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
# A DNS name for an address: labels may carry upper case (DNS is case-insensitive).
_DNS_LABEL_ANYCASE = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
# Path characters that need no quoting anywhere (no spaces, globs, $, quotes, ;).
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_CONTAINER_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# Image reference grammar of distribution/reference (docker), simplified:
# [domain[:port]/]path-component(/path-component)*[:tag][@digest]
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_REPOSITORY_RE = re.compile(rf"^{_REPOSITORY}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_IMAGE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_REPOSITORY})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
# A provisioner name is a qualified name: optional DNS-subdomain prefix + "/" + name.
_QUALIFIED_NAME_RE = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$")

# exports(5) options we know; "name=" entries take a value checked below.
NFS_OPTIONS = frozenset({
    "rw", "ro", "sync", "async", "secure", "insecure", "wdelay", "no_wdelay",
    "hide", "nohide", "crossmnt", "subtree_check", "no_subtree_check",
    "insecure_locks", "secure_locks", "no_auth_nlm", "auth_nlm",
    "root_squash", "no_root_squash", "all_squash", "no_all_squash",
})
_NFS_VALUE_OPTIONS = {
    "anonuid": re.compile(r"^[0-9]{1,10}$"),
    "anongid": re.compile(r"^[0-9]{1,10}$"),
    "fsid": re.compile(r"^(?:[0-9]{1,10}|root|[0-9a-fA-F-]{8,36})$"),
    "sec": re.compile(r"^(?:sys|krb5|krb5i|krb5p)(?::(?:sys|krb5|krb5i|krb5p))*$"),
}
_NFS_CONFLICTS = [("rw", "ro"), ("sync", "async"), ("root_squash", "no_root_squash"),
                  ("all_squash", "no_all_squash"), ("secure", "insecure"),
                  ("subtree_check", "no_subtree_check")]


def _matching(regex: re.Pattern, max_len: int | None, what: str):
    """A validator: the value must match ``regex`` (and be at most ``max_len`` long)."""
    def check(value: str) -> str:
        if (max_len is not None and len(value) > max_len) or not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return check


hostname = _matching(_LABEL_RE, None, (
    "a host name: use an RFC 1123 label (lower-case letters, digits and '-', 1-63 characters,"
    " not starting or ending with '-')"))


def address(value: str) -> str:
    """IPv4/IPv6 address or DNS name."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".") if value else []
    if (
        value
        and len(value) <= 253
        and all(_DNS_LABEL_ANYCASE.match(label) for label in labels)
        # An all-numeric last label is a broken IP address (e.g. 192.168.20.300), not a name.
        and not labels[-1].isdigit()
    ):
        return value
    raise ValueError(f"{value!r} is not an IPv4/IPv6 address or a DNS name")


def dns1123_label(value: str, max_len: int = 63) -> str:
    if len(value) > max_len or not _LABEL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: lower-case letters, digits and '-', "
            f"at most {max_len} characters, starting and ending with a letter or digit"
        )
    return value


dns1035_label = _matching(_DNS1035_RE, None, (
    "a DNS-1035 label: lower-case letters, digits and '-', at most 63 characters, starting "
    "with a letter and ending with a letter or digit"))


dns1123_subdomain = _matching(_SUBDOMAIN_RE, 253, (
    "a DNS-1123 subdomain: dot-separated lower-case labels (letters, digits, '-'), at most "
    "253 characters"))


qualified_name = _matching(_QUALIFIED_NAME_RE, 316, (
    "a qualified name: [dns-subdomain/]name, e.g. 'k8s-sigs.io/nfs-subdir-external-"
    "provisioner'"))


def abs_path(value: str) -> str:
    """An absolute, normalised path without shell metacharacters, not '/'."""
    if not _PATH_RE.match(value):
        raise ValueError(
            f"{value!r} is not allowed: use an absolute path of letters, digits and . _ - + @ / "
            "(no spaces or shell metacharacters)"
        )
    if posixpath.normpath(value) != value or value.startswith("//"):
        raise ValueError(
            f"{value!r} is not a normalised path (no '..', '.', '//' or trailing '/'): "
            f"use {posixpath.normpath(value)!r}"
        )
    if value == "/":
        raise ValueError("'/' is not allowed here: use a dedicated directory")
    return value


def quantity(value: str) -> str:
    """A Kubernetes quantity for storage, e.g. 100Mi or 1Gi; must be > 0."""
    m = _QUANTITY_RE.match(value)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(
            f"{value!r} is not a Kubernetes storage quantity: a positive number with an optional "
            "suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E (e.g. 100Mi)"
        )
    return value


def port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port: use 1-65535")
    return value


MAX_REPLICAS = 1000


def _count(what: str, value) -> int:
    """A whole number 0..MAX_REPLICAS (an int: a task converts its string option first)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REPLICAS:
        raise ValueError(f"{what} must be a whole number 0-{MAX_REPLICAS}, got {value!r}")
    return value


def replicas(value) -> int:
    """A StatefulSet's replica count: 0-1000."""
    return _count("replicas", value)


def partition(value) -> int:
    """A RollingUpdate partition: 0-1000; above the replica count is legal (no pod moves)."""
    return _count("partition", value)


def image_tag_of(tag: str, tags: list[str]) -> str:
    """One of the inventory's images.web.tags (those build-images pushes)."""
    if tag not in tags:
        raise ValueError(f"image tag {tag!r} is not one of images.web.tags ({', '.join(tags)})")
    return tag


image_ref = _matching(_IMAGE_RE, 255, (
    "an image reference: [registry[:port]/]name[:tag][@digest] with a lower-case name, e.g. "
    "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"))


repository = _matching(_REPOSITORY_RE, 255, (
    "an image repository name: lower-case letters, digits and separators . _ - / (e.g. web-"
    "httpd)"))


image_tag = _matching(_TAG_RE, None, (
    "an image tag: letters, digits, '_', '.', '-', at most 128 characters, not starting with "
    "'.' or '-'"))


container_name = _matching(_CONTAINER_RE, None, (
    "a container name: letters, digits, '_', '.', '-', starting with a letter or digit"))


username = _matching(_USER_RE, None, (
    "a user name: lower-case letters, digits, '_' and '-', starting with a letter or '_', at "
    "most 32 characters"))


def nfs_clients(value: str) -> str:
    """exports(5) client spec: '*', an address, a network (CIDR) or a (wildcard) host name."""
    if value == "*":
        return value
    try:
        return str(ipaddress.ip_network(value, strict=False)) if "/" in value else str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if re.match(r"^[A-Za-z0-9*?](?:[-A-Za-z0-9.*?]{0,251}[A-Za-z0-9*?])?$", value) and not value.replace(".", "").isdigit():
        return value
    raise ValueError(
        f"{value!r} is not an NFS client spec: use '*', an IP address, a network like "
        "192.168.20.0/24, or a host name (wildcards * and ? allowed)"
    )


def nfs_options(values: list[str]) -> list[str]:
    unknown = []
    for opt in values:
        name, eq, val = opt.partition("=")
        if eq:
            pattern = _NFS_VALUE_OPTIONS.get(name)
            if pattern is None or not pattern.match(val):
                unknown.append(opt)
        elif opt not in NFS_OPTIONS:
            unknown.append(opt)
    if unknown:
        raise ValueError(
            f"unknown NFS export option(s) {', '.join(map(repr, unknown))}: allowed are "
            f"{', '.join(sorted(NFS_OPTIONS))}, and {', '.join(n + '=VALUE' for n in _NFS_VALUE_OPTIONS)}"
        )
    for a, b in _NFS_CONFLICTS:
        if a in values and b in values:
            raise ValueError(f"NFS export options {a!r} and {b!r} contradict each other: keep one")
    if len(set(values)) != len(values):
        raise ValueError("NFS export options are repeated: list each once")
    return values


def local_path(value: str) -> str:
    """A path on the machine running labkit (ssh key, known_hosts): no control characters."""
    if not value or any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{value!r} is not a usable path: it must be non-empty without control characters")
    return os.path.expanduser(value)
