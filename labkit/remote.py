"""SSH to the lab's hosts with Fabric: pinned host keys, sudo, timeouts, parallel runs.

Fabric 3 alone accepts any host key, loads no known_hosts and lets a
``GroupException`` escape as a traceback. This module closes those gaps:

* one ``fabric.Connection`` per inventory host (user, port, key, connect_timeout),
  never reading ``~/.ssh/config`` so the inventory is the whole truth;
* host keys pinned on first use to the inventory's known_hosts file; a changed
  key is refused with the file line to remove;
* sudo for non-root users, the password from ``LABKIT_SUDO_PASSWORD`` or a
  prompt, never echoed or logged;
* every SSH failure becomes a ``HostError`` naming the host; ``run_parallel``
  collects each host's failure next to the others' results (the runner and
  the flows turn them into a ``HostsFailed``).
"""
from __future__ import annotations

import contextlib
import getpass
import io
import os
import socket
import sys
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import paramiko
from fabric import Config, Connection
from invoke.exceptions import AuthFailure, CommandTimedOut, Failure, UnexpectedExit
from paramiko.hostkeys import HostKeyEntry, HostKeys
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    NoValidConnectionsError,
    SSHException,
)

from labkit.errors import HostError, LabkitError
from labkit.shell import quote

SUDO_PASSWORD_ENV = "LABKIT_SUDO_PASSWORD"

# Paths and values that reach a remote shell are quoted (labkit.shell.quote); the short name
# keeps call sites greppable.
q = quote


@dataclass(frozen=True)
class RunResult:
    host: str
    command: str
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


# --------------------------------------------------------------------------- host keys

_known_hosts_lock = threading.Lock()


def _host_key_name(address: str, port: int) -> str:
    return address if int(port) == 22 else f"[{address}]:{port}"


def _entry_matches(entry: HostKeyEntry, name: str) -> bool:
    for pattern in entry.hostnames:
        if pattern.startswith("|1|"):
            salt = pattern.split("|")[2]
            if HostKeys.hash_host(name, salt) == pattern:
                return True
        elif pattern == name:
            return True
    return False


def known_hosts_lines(path: str | os.PathLike, address: str, port: int = 22) -> list[int]:
    """1-based line numbers of ``path`` holding a key for ``address:port``."""
    name = _host_key_name(address, port)
    found = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return found
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = HostKeyEntry.from_line(line, lineno)
        except SSHException:
            continue
        if entry is not None and _entry_matches(entry, name):
            found.append(lineno)
    return found


class PinOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host key once and write it to the project's known_hosts.

    Threads connecting to different hosts share the file, so each addition
    re-reads it under a lock and rewrites it atomically (paramiko's
    AutoAddPolicy would let two threads overwrite each other's key).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def missing_host_key(self, client, hostname, key):
        with _known_hosts_lock:
            keys = HostKeys()
            if self.path.exists():
                keys.load(str(self.path))
            pinned = keys.lookup(hostname)
            if pinned is not None and key.get_name() in pinned:
                # Pinned by another connection meanwhile: it must be the same key.
                if pinned[key.get_name()] != key:
                    raise BadHostKeyException(hostname, key, pinned[key.get_name()])
            else:
                keys.add(hostname, key.get_name(), key)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".known_hosts.")
                os.close(fd)
                keys.save(tmp)
                os.replace(tmp, self.path)
        client.get_host_keys().add(hostname, key.get_name(), key)


# --------------------------------------------------------------------------- sudo password

_sudo_password: str | None = None
_sudo_lock = threading.Lock()


def sudo_password(user: str) -> str:
    """The sudo password, asked once per run: env, else a prompt on a terminal.

    Without a terminal and without the env variable we assume passwordless
    sudo (""); sudo then fails with a message saying how to pass one.
    """
    global _sudo_password
    with _sudo_lock:
        if _sudo_password is None:
            env = os.environ.get(SUDO_PASSWORD_ENV)
            if env is not None:
                _sudo_password = env
            elif sys.stdin is not None and sys.stdin.isatty():
                _sudo_password = getpass.getpass(f"sudo password for {user} on the lab hosts: ")
            else:
                _sudo_password = ""
        return _sudo_password


# --------------------------------------------------------------------------- connections


def _get(obj: Any, name: str, default=None):
    """Read ``name`` from a pydantic model, a namespace or a dict."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass
class SSHSettings:
    user: str = "root"
    port: int = 22
    key: str | None = None
    sudo: bool = False
    known_hosts: str = ".labkit/known_hosts"
    connect_timeout: float = 10

    @classmethod
    def from_inventory(cls, inventory) -> "SSHSettings":
        ssh = _get(inventory, "ssh")
        base = Path(str(_get(inventory, "path", "") or "")).parent if _get(inventory, "path") else None

        def resolve(value):
            if value is None:
                return None
            p = Path(os.path.expanduser(str(value)))
            # A relative known_hosts/key is relative to the inventory file, so
            # `-i other/lab.yaml` keeps its own pins.
            if not p.is_absolute() and base is not None:
                p = base / p
            return str(p)

        return cls(
            user=str(_get(ssh, "user", "root")),
            port=int(_get(ssh, "port", 22)),
            key=resolve(_get(ssh, "key")),
            sudo=bool(_get(ssh, "sudo", False)),
            known_hosts=resolve(_get(ssh, "known_hosts", ".labkit/known_hosts")),
            connect_timeout=float(_get(ssh, "connect_timeout", 10)),
        )


class HostConnection:
    """One inventory host: a Fabric connection plus labkit's error handling.

    ``commands`` counts SSH round trips (commands and uploads) for benchmarks.
    """

    def __init__(self, name: str, address: str, settings: SSHSettings):
        self.name = name
        self.address = address
        self.settings = settings
        self.commands = 0
        self._count_lock = threading.Lock()
        config = Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
        # The timeout goes in connect_kwargs because Fabric int()s connect_timeout
        # (0.5 s would become "no timeout"); banner/auth timeouts keep a port that
        # accepts TCP but never speaks SSH from hanging the run.
        t = settings.connect_timeout
        connect_kwargs: dict[str, Any] = {"allow_agent": False, "look_for_keys": False,
                                          "timeout": t, "banner_timeout": t, "auth_timeout": t}
        if settings.key:
            connect_kwargs["key_filename"] = [settings.key]
        self.conn = Connection(
            address,
            user=settings.user,
            port=settings.port,
            connect_kwargs=connect_kwargs,
            config=config,
        )
        known = Path(settings.known_hosts)
        if known.exists():
            self.conn.client.load_host_keys(str(known))
        self.conn.client.set_missing_host_key_policy(PinOnFirstUse(known))

    def __repr__(self):
        return f"HostConnection({self.name}@{self.address})"

    @property
    def use_sudo(self) -> bool:
        return self.settings.sudo and self.settings.user != "root"

    def _count(self):
        with self._count_lock:
            self.commands += 1
            if not self.conn.is_connected:  # this command opens an SSH connection (benchmarks count them)
                OPENED[self.name] = OPENED.get(self.name, 0) + 1

    def open(self) -> None:
        try:
            self.conn.open()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a HostError
            raise translate_error(self, exc) from None

    def run(self, command: str, *, sudo: bool = False, ok_exit_codes: Iterable[int] = (0,),
            timeout: int | None = None, check: bool = True) -> RunResult:
        """Run ``command`` (already quoted) and return its result.

        ``check``: raise ``HostError`` when the exit code is not in ``ok_exit_codes``.
        """
        self._count()
        try:
            if sudo and self.use_sudo:
                # invoke's sudo prefixes only the first word; wrap in sh -c so
                # pipelines and `&&` chains run as root entirely.
                res = self.conn.sudo(
                    "sh -c " + q(command), password=sudo_password(self.settings.user),
                    hide=True, warn=True, timeout=timeout, in_stream=False,
                )
            else:
                res = self.conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
        except Exception as exc:  # noqa: BLE001
            raise translate_error(self, exc) from None
        result = RunResult(self.name, command, res.stdout, res.stderr, res.exited)
        if check and result.exited not in tuple(ok_exit_codes):
            raise HostError(self.name, command_failure(result))
        return result

    def put_text(self, path: str, content: str, *, mode: int = 0o644,
                 backup_suffix: str = ".labkit.bak") -> None:
        """Write ``content`` to ``path`` atomically, keeping the old file as a backup.

        The text goes by sftp to /tmp (writable by any user), then one command
        (with sudo when needed) copies it next to the target and renames it
        into place, so readers never see a half-written file.
        """
        tmp = f"/tmp/.labkit-{uuid.uuid4().hex}"
        self.put_stream(io.BytesIO(content.encode()), tmp)
        self.run(install_command(tmp, path, mode=mode, backup_suffix=backup_suffix), sudo=True)

    def put_stream(self, stream, remote: str) -> None:
        self._count()
        try:
            self.conn.put(stream, remote=remote)
        except Exception as exc:  # noqa: BLE001
            raise translate_error(self, exc, doing=f"upload to {remote}") from None

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error
            pass


def install_command(tmp: str, path: str, *, mode: int = 0o644, backup_suffix: str = ".labkit.bak") -> str:
    """Shell that moves an uploaded temp file into ``path`` atomically with a backup."""
    p = q(path)
    new = q(path + ".labkit.new")
    bak = q(path + backup_suffix)
    d = q(os.path.dirname(path) or "/")
    return (
        f"set -e; mkdir -p {d}; "
        f"if [ -e {p} ]; then cp -p {p} {bak}; fi; "
        f"cat {q(tmp)} > {new}; chmod {mode:o} {new}; mv -f {new} {p}; rm -f {q(tmp)}"
    )


def command_failure(result: RunResult) -> str:
    # Each distinct line once: kubectl prints the same error for every object it could not create.
    lines = [ln for ln in (result.stderr.strip() or result.stdout.strip()).splitlines() if ln.strip()]
    detail = list(dict.fromkeys(lines))[-5:]
    text = " | ".join(detail) if detail else "no output"
    return f"command exited {result.exited}: {shown_command(result.command)}: {text}"


def shown_command(command: str) -> str:
    """A command as an error shows it: its first line, at most 200 characters (an inline script's
    text would bury the error)."""
    first = command.split("\n", 1)[0]
    return first[:200] + (" ..." if "\n" in command or len(first) > 200 else "")


def translate_error(host: HostConnection, exc: BaseException, doing: str | None = None) -> HostError:
    """Turn an SSH/Fabric exception into a HostError that says what to do."""
    s = host.settings
    where = f"{host.address}:{s.port}"
    if isinstance(exc, HostError):
        return exc
    if isinstance(exc, BadHostKeyException):
        lines = known_hosts_lines(s.known_hosts, host.address, s.port)
        line = f"line {', '.join(map(str, lines))} of {s.known_hosts}" if lines else s.known_hosts
        return HostError(
            host.name,
            f"host key of {where} changed (got {exc.key.get_name()} "
            f"{exc.key.get_fingerprint().hex()}); refusing to connect. If the host was "
            f"reinstalled on purpose, remove {line} "
            f"(ssh-keygen -R {q(_host_key_name(host.address, s.port))} -f {q(s.known_hosts)}) "
            "and run again.",
        )
    if isinstance(exc, NoValidConnectionsError):
        return HostError(host.name, f"cannot connect to {where}: connection refused or unreachable; "
                                    "is the host up and sshd running?")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return HostError(host.name, f"no answer from {where} within {s.connect_timeout}s "
                                    "(ssh.connect_timeout); is the host up and the address right?")
    if isinstance(exc, AuthenticationException):
        return HostError(host.name, f"SSH login as {s.user} to {where} failed with key {s.key}; "
                                    f"install the public key on the host (ssh-copy-id) or fix ssh.key")
    if isinstance(exc, AuthFailure):
        return HostError(host.name, f"sudo refused the password for {s.user}; give the right one in "
                                    f"{SUDO_PASSWORD_ENV} or at the prompt (a terminal), or allow "
                                    f"{s.user} passwordless sudo")
    if isinstance(exc, CommandTimedOut):
        return HostError(host.name, f"command timed out after {exc.timeout}s")
    if isinstance(exc, UnexpectedExit):
        r = exc.result
        return HostError(host.name, command_failure(RunResult(host.name, r.command, r.stdout, r.stderr, r.exited)))
    if isinstance(exc, Failure):
        return HostError(host.name, f"command failed: {exc}")
    if isinstance(exc, FileNotFoundError) and s.key and not Path(s.key).exists():
        return HostError(host.name, f"SSH key {s.key} not found; fix ssh.key in the inventory")
    if isinstance(exc, (SSHException, OSError, EOFError)):
        what = doing or f"SSH to {where}"
        return HostError(host.name, f"{what} failed: {exc.__class__.__name__}: {exc}")
    return HostError(host.name, f"{exc.__class__.__name__}: {exc}")


# --------------------------------------------------------------------------- the lab


# SSH connections opened per host name in this process (bench/e2e_flow.py reports them).
OPENED: dict[str, int] = {}
_session: dict[str, HostConnection] | None = None


@contextlib.contextmanager
def session(inventory) -> Iterator[dict[str, HostConnection]]:
    """One SSH connection per host for several flows (``invoke up``): inside it ``connect`` hands out
    the session's connections and ``close_all`` leaves them open; they close when it ends."""
    global _session
    if _session is not None:  # already in one: the outer session owns the connections
        yield _session
        return
    conns = _new_connections(inventory)
    _session = conns
    try:
        yield conns
    finally:
        _session = None
        for h in conns.values():
            h.close()


def connect(inventory, names: Iterable[str] | None = None) -> dict[str, HostConnection]:
    """Lazy connections (opened on first command) for the inventory's hosts; the session's, in one."""
    if _session is not None:
        return {n: h for n, h in _session.items() if names is None or n in set(names)}
    return _new_connections(inventory, names)


def _new_connections(inventory, names: Iterable[str] | None = None) -> dict[str, HostConnection]:
    settings = SSHSettings.from_inventory(inventory)
    if settings.sudo and settings.user != "root":
        # Ask now, in the main thread, before any progress display or worker thread starts.
        sudo_password(settings.user)
    wanted = set(names) if names is not None else None
    conns = {}
    for h in _get(inventory, "hosts"):
        name = _get(h, "name")
        if wanted is not None and name not in wanted:
            continue
        conns[name] = HostConnection(name, str(_get(h, "address")), settings)
    return conns


def close_all(hosts: dict[str, HostConnection]) -> None:
    for name, h in hosts.items():
        if _session is None or _session.get(name) is not h:
            h.close()


def command_counts(hosts: dict[str, HostConnection]) -> dict[str, int]:
    """SSH round trips per host (commands + uploads), for the benchmarks."""
    return {name: h.commands for name, h in hosts.items()}


@dataclass
class ParallelOutcome:
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_parallel(hosts: Iterable[HostConnection], fn: Callable[[HostConnection], Any], *,
                 on_done: Callable[[str, Any, str | None], None] | None = None) -> ParallelOutcome:
    """Run ``fn(host)`` on every host in threads; never raises for a host's failure.

    ``on_done(name, result, error)`` is called as each host finishes (from its
    thread) so the UI can report per host; results keep the inventory order.
    """
    hosts = list(hosts)
    outcome = ParallelOutcome()
    if not hosts:
        return outcome

    def one(h: HostConnection):
        try:
            value = fn(h)
        except HostError as exc:
            return None, exc.detail if exc.host == h.name else str(exc)
        except LabkitError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug on one host must not hide the others
            return None, translate_error(h, exc).detail
        return value, None

    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        futures = {h.name: pool.submit(one, h) for h in hosts}
        for h in hosts:
            value, err = futures[h.name].result()
            if on_done is not None:
                on_done(h.name, value, err)
            if err is None:
                outcome.results[h.name] = value
            else:
                outcome.failures[h.name] = err
    return outcome

