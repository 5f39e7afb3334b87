"""containerd's config.toml edited by TOML key, and containerd's trust in the plain-HTTP registry.

Every edit of config.toml goes through ``load``/``put``: tomlkit keeps the comments, quoting and
layout of everything it does not touch, and both quote styles of a header name the same table
(containerd 2.x writes ``[plugins.'io.containerd.cri.v1.images'.registry]``).

Trust: config.toml gets ``config_path = "/etc/containerd/certs.d"`` in the CRI registry table
(``REGISTRY_TABLE``) and ``certs.d/<host:port>/hosts.toml`` points at ``http://<host:port>``.
containerd re-reads hosts.toml on every pull, so only a config.toml change restarts it.
"""
from __future__ import annotations

import ipaddress
import tomllib
from typing import Iterator
from urllib.parse import urlsplit

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import String, StringType, Table

from labkit.errors import OperationError
from labkit.facts.containerd import CERTS_D, CONFIG_TOML, REGISTRY_TABLE, hosts_toml_path, lookup, table_name
from labkit.operations.base import Command, PutFile
from labkit.operations.service import restart_or_roll_back

def restart(config_existed: bool) -> Command:
    """Restart containerd after a config.toml change; put the old file back if it does not start."""
    return restart_or_roll_back("containerd", [(CONFIG_TOML, config_existed)])


# ---- config.toml by key ----------------------------------------------------------------------------


def load(raw: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(raw)
    except TOMLKitError as exc:
        raise OperationError(f"{CONFIG_TOML} is not valid TOML ({exc}); fix it and run again") from None


def _indent(parent) -> str:
    """A new table's header indent: its siblings', else one step under an indented parent."""
    for item in parent.values():
        if isinstance(item, Table):
            return item.trivia.indent.replace("\n", "")
    own = parent.trivia.indent.replace("\n", "") if isinstance(parent, Table) else ""
    return own + "  " if own else ""


def put(doc, path: tuple[str, ...], value) -> None:
    """``path[-1] = value`` in the table ``path[:-1]``, made with its missing parents when absent.
    An existing key keeps its place and quoting; a new table is indented like its siblings."""
    *names, key = path
    node, blank = doc, False
    for depth, name in enumerate(names, 1):
        if name not in node:
            # A new table goes at the end of its parent and takes over the blank line ending it;
            # only the innermost one has a header (and a blank line before it).
            leaf = depth == len(names)
            blank = blank or node.as_string().endswith("\n\n")
            indent = _indent(node)
            node[name] = tomlkit.table(is_super_table=not leaf)
            node[name].trivia.indent = ("\n" if leaf and not blank else "") + indent
        node = node[name]
    if key in node:
        # A string keeps its quotes (containerd 2.x writes 'literal' ones); tomlkit < 0.15 would not.
        literal = isinstance(node[key], String) and node[key].type == StringType.SLL
        node[key] = tomlkit.string(value, literal=True) if literal else value
        return
    item = tomlkit.item(value)
    item.trivia.indent = "  "  # under the table's header; tomlkit prefixes the header's indent
    node.add(key, item)
    if blank:
        node.add(tomlkit.nl())


def checked(text: str, wanted: dict[tuple[str, ...], object], fix: str) -> dict:
    """``text`` parsed, when it holds every ``wanted`` value: a safety net under the edits."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None
    if data is None or any(lookup(data, path) != value for path, value in wanted.items()):
        raise OperationError(f"could not edit {CONFIG_TOML} by key; {fix} by hand and run again")
    return data


# ---- registry.mirrors and registry.configs.<host>.tls -> certs.d ---------------------------------


def _with_scheme(endpoint: str) -> str:
    # As containerd 1.7's CRI completed a mirror endpoint (addDefaultScheme).
    if "://" in endpoint:
        return endpoint
    host = urlsplit(f"//{endpoint}").hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    return f"{'http' if local else 'https'}://{endpoint}"


def _tls(tls: dict) -> dict:
    """configs.<host>.tls as hosts.toml keys (containerd's docs/hosts.md: ca, client, skip_verify)."""
    keys: dict = {}
    if tls.get("ca_file"):
        keys["ca"] = tls["ca_file"]
    if tls.get("cert_file"):
        keys["client"] = [[tls["cert_file"], tls["key_file"]]] if tls.get("key_file") else tls["cert_file"]
    if tls.get("insecure_skip_verify"):
        keys["skip_verify"] = True
    return keys


def has_legacy(registry: dict) -> bool:
    """containerd refuses its whole CRI plugin (the service stays active, the node goes NotReady)
    when config_path is set beside any of these: "`mirrors` cannot be set when `config_path` is
    provided", and the same for `configs.tls` (1.7)."""
    return bool(registry.get("mirrors")) or any("tls" in c for c in (registry.get("configs") or {}).values())


def legacy_hosts(registry: dict) -> dict[str, dict]:
    """certs.d/<dir>/hosts.toml documents doing what ``mirrors`` and ``configs.<host>.tls`` of the
    CRI registry table (plain data) did: mirrors pulled and resolved, the registry itself stayed
    the last resort (hosts.toml's implicit server), tls applied to every endpoint on its host,
    mirror "*" is certs.d/_default."""
    tls = {host: _tls(c["tls"]) for host, c in (registry.get("configs") or {}).items() if "tls" in c}
    files: dict[str, dict] = {}
    for name, mirror in (registry.get("mirrors") or {}).items():
        hosts = {}
        for url in map(_with_scheme, mirror.get("endpoint") or []):
            parts = urlsplit(url)
            # CRI took an endpoint's path as the API root; hosts.toml would append /v2 to it.
            hosts[url] = {"capabilities": ["pull", "resolve"], **({"override_path": True} if parts.path else {}),
                          **tls.get(parts.netloc, {})}
        files["_default" if name == "*" else name] = {"host": hosts} if hosts else {}
    for host, keys in tls.items():
        files.setdefault(host, {}).update(keys)  # top-level keys: that host's own server
    return {name: data for name, data in files.items() if data}


def drop_legacy(registry) -> None:
    """Remove the mirrors and configs.<host>.tls entries; the empty tables a default has stay.
    configs.<host>.auth stays too: containerd 1.7 and 2.x read it beside config_path and refuse
    nothing for it, and hosts.toml has no place for credentials."""
    mirrors = registry.get("mirrors") or {}
    for name in list(mirrors):
        del mirrors[name]
    configs = registry.get("configs") or {}
    for host in list(configs):
        if "tls" in configs[host]:
            del configs[host]["tls"]
            if not configs[host]:
                del configs[host]


# ---- trust -----------------------------------------------------------------------------------------


def hosts_toml(registry: str) -> str:
    url = f"http://{registry}"
    return (f'server = "{url}"\n\n'
            f'[host."{url}"]\n'
            '  capabilities = ["pull", "resolve", "push"]\n')


def _config_version(config: dict, major: int | None) -> int:
    if not config["exists"]:
        if major is None:
            raise OperationError("containerd is not installed (containerd --version failed); "
                                 "install it or set runtime: docker for this host")
        return 3 if major >= 2 else 2
    if config["version"] not in REGISTRY_TABLE:
        raise OperationError(
            f"{CONFIG_TOML} has config version {config['version']!r}; labkit handles version 2 (containerd 1.x) "
            "and 3 (2.x): regenerate it with `containerd config default` and run again")
    return config["version"]


def containerd_trust(*, registry: str, config: dict, major: int | None,
                     hosts: str | None) -> Iterator[Command | PutFile]:
    if not config["valid"]:
        raise OperationError(f"{CONFIG_TOML} is not valid TOML ({config['error']}); fix it and run again")
    version = _config_version(config, major)
    path = REGISTRY_TABLE[version]
    raw = config["raw"] or ""
    doc = load(raw)
    if not config["exists"]:
        doc["version"] = version
    before = lookup(doc.unwrap(), path) or {}
    why = []
    moved = legacy_hosts(before)
    moved.pop(registry, None)  # this registry's hosts.toml is labkit's own (below)
    if has_legacy(before):
        drop_legacy(lookup(doc, path))
        why.append("its registry.mirrors/configs.*.tls moved to certs.d: containerd refuses them beside config_path")
    old = before.get("config_path")
    if old != CERTS_D:
        put(doc, path + ("config_path",), CERTS_D)
        if old and ":" in str(old):
            # containerd issue 12808: some 2.x releases ignore hosts.toml when it lists several dirs.
            why.append(f"was {old!r}: some containerd releases ignore hosts.toml with several directories")
    new = doc.as_string()
    if new != raw:
        fix = f'set config_path = "{CERTS_D}" under [{table_name(path)}], without mirrors or configs.*.tls,'
        if has_legacy(lookup(checked(new, {path + ("config_path",): CERTS_D}, fix), path)):
            raise OperationError(f"could not edit {CONFIG_TOML} by key; {fix} by hand and run again")
        for name, data in sorted(moved.items()):
            yield PutFile(f"{CERTS_D}/{name}/hosts.toml", tomlkit.dumps(data),
                          description=f"{name}: hosts.toml from config.toml's registry.mirrors/configs")
        yield PutFile(CONFIG_TOML, new, description="; ".join([f"config_path = {CERTS_D}"] + why)
                      if config["exists"] else f"create config.toml (version {version}) with config_path")
    wanted = hosts_toml(registry)
    if hosts != wanted:
        yield PutFile(hosts_toml_path(registry), wanted, description=f"trust http://{registry}")
    if new != raw:
        yield restart(config["exists"])
