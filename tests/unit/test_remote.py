"""labkit.remote: exact commands through Fabric's MockRemote, sudo, host-key pinning,
error translation, parallel runs. Real sockets only on loopback."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import paramiko
import pytest
from fabric.testing.base import Command as MockCommand
from fabric.testing.base import MockRemote, Session
from invoke.exceptions import AuthFailure
from paramiko.ssh_exception import AuthenticationException, BadHostKeyException, NoValidConnectionsError

from labkit import remote
from labkit.errors import HostError
from labkit.remote import HostConnection, PinOnFirstUse, SSHSettings


@pytest.fixture
def mock_remote():
    m = MockRemote()  # starts patching SSHClient itself
    yield m
    m.stop()


@pytest.fixture(autouse=True)
def no_cached_password(monkeypatch):
    monkeypatch.setattr(remote, "_sudo_password", None)
    monkeypatch.delenv(remote.SUDO_PASSWORD_ENV, raising=False)


def settings(tmp_path, **kw):
    return SSHSettings(**{"user": "root", "port": 22, "key": str(tmp_path / "id"),
                          "known_hosts": str(tmp_path / "known_hosts"), "connect_timeout": 2.5, **kw})


def test_run_sends_exact_command_and_counts(mock_remote, tmp_path):
    channels = mock_remote.expect_sessions(Session(commands=[
        MockCommand("cat /etc/os-release", out=b"ID=debian\n"), MockCommand("test -d '/my dir'", exit=1)]))
    h = HostConnection("master", "192.168.20.6", settings(tmp_path, port=2222))
    r = h.run("cat /etc/os-release")
    assert (r.host, r.stdout, r.exited) == ("master", "ID=debian\n", 0)
    r = h.run("test -d " + remote.q("/my dir"), ok_exit_codes=(0, 1))
    assert r.exited == 1
    assert h.commands == 2
    channels[0].exec_command.assert_called_once_with("cat /etc/os-release")
    channels[1].exec_command.assert_called_once_with("test -d '/my dir'")
    kwargs = mock_remote.sessions[0].client.connect.call_args.kwargs
    assert kwargs["hostname"] == "192.168.20.6" and kwargs["port"] == 2222 and kwargs["username"] == "root"
    # float timeouts reach paramiko intact (Fabric's connect_timeout would int() them)
    assert kwargs["timeout"] == 2.5 and kwargs["banner_timeout"] == 2.5 and kwargs["auth_timeout"] == 2.5
    assert kwargs["key_filename"] == [str(tmp_path / "id")]
    assert kwargs["look_for_keys"] is False and kwargs["allow_agent"] is False


def test_failed_command_is_a_host_error_naming_host_and_command(mock_remote, tmp_path):
    mock_remote.expect(cmd="systemctl restart docker", err=b"Job for docker.service failed.\n", exit=1)
    h = HostConnection("node01", "192.168.20.7", settings(tmp_path))
    with pytest.raises(HostError) as exc:
        h.run("systemctl restart docker")
    assert exc.value.host == "node01"
    assert str(exc.value) == ("node01: command exited 1: systemctl restart docker: "
                              "Job for docker.service failed.")


def test_root_never_uses_sudo(mock_remote, tmp_path):
    channel = mock_remote.expect(cmd="mkdir -p /data/registry")
    h = HostConnection("master", "h", settings(tmp_path, sudo=True))
    h.run("mkdir -p /data/registry", sudo=True)
    channel.exec_command.assert_called_once_with("mkdir -p /data/registry")


def test_sudo_wraps_whole_command_and_never_shows_the_password(mock_remote, tmp_path, monkeypatch):
    monkeypatch.setenv(remote.SUDO_PASSWORD_ENV, "s3cret pw")
    cmd = "cat /tmp/x > /etc/exports && exportfs -ra"
    wrapped = "sudo -S -p '[sudo] password: ' sh -c 'cat /tmp/x > /etc/exports && exportfs -ra'"
    channel = mock_remote.expect(cmd=wrapped, out=b"[sudo] password: \ndone\n")
    h = HostConnection("node02", "h", settings(tmp_path, user="lab", sudo=True))
    r = h.run(cmd, sudo=True)
    channel.exec_command.assert_called_once_with(wrapped)
    assert channel._stdin.getvalue() == b"s3cret pw\n"  # typed into sudo's prompt only
    assert "s3cret" not in r.stdout + r.stderr + r.command


def test_sudo_without_sudo_flag_runs_plain_for_non_root(mock_remote, tmp_path):
    channel = mock_remote.expect(cmd="docker info")
    HostConnection("n", "h", settings(tmp_path, user="lab", sudo=False)).run("docker info", sudo=True)
    channel.exec_command.assert_called_once_with("docker info")


def test_sudo_password_from_env_else_empty_without_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin", None)
    assert remote.sudo_password("lab") == ""
    monkeypatch.setattr(remote, "_sudo_password", None)
    monkeypatch.setenv(remote.SUDO_PASSWORD_ENV, "pw")
    assert remote.sudo_password("lab") == "pw"


def test_put_text_uploads_then_installs_atomically(tmp_path, monkeypatch):
    h = HostConnection("master", "h", settings(tmp_path))
    sent, ran = [], []
    monkeypatch.setattr(h, "put_stream", lambda stream, path: sent.append((stream.read(), path)))
    monkeypatch.setattr(h, "run", lambda cmd, **kw: ran.append((cmd, kw)))
    h.put_text("/etc/docker/daemon.json", '{"a": 1}\n', mode=0o600)
    (content, tmp), = sent
    assert content == b'{"a": 1}\n' and tmp.startswith("/tmp/.labkit-")
    assert ran == [(remote.install_command(tmp, "/etc/docker/daemon.json", mode=0o600), {"sudo": True})]


def test_install_command_keeps_backup_and_renames():
    assert remote.install_command("/tmp/.labkit-1", "/etc/my conf/x.json", mode=0o644) == (
        "set -e; mkdir -p '/etc/my conf'; "
        "if [ -e '/etc/my conf/x.json' ]; then cp -p '/etc/my conf/x.json' '/etc/my conf/x.json.labkit.bak'; fi; "
        "cat /tmp/.labkit-1 > '/etc/my conf/x.json.labkit.new'; chmod 644 '/etc/my conf/x.json.labkit.new'; "
        "mv -f '/etc/my conf/x.json.labkit.new' '/etc/my conf/x.json'; rm -f /tmp/.labkit-1")


def test_install_command_really_is_atomic_with_backup(tmp_path):
    import subprocess

    target = tmp_path / "conf"
    target.write_text("old\n")
    up = tmp_path / "upload"
    up.write_text("new\n")
    subprocess.run(["sh", "-c", remote.install_command(str(up), str(target))], check=True)
    assert target.read_text() == "new\n"
    assert (tmp_path / "conf.labkit.bak").read_text() == "old\n"
    assert not up.exists() and not (tmp_path / "conf.labkit.new").exists()


# ---------------------------------------------------------------- host keys


class FakeClient:
    def __init__(self):
        self.keys = paramiko.HostKeys()

    def get_host_keys(self):
        return self.keys


def test_first_use_pins_key_to_the_project_file(tmp_path):
    path = tmp_path / "sub" / "known_hosts"
    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    key = key or paramiko.RSAKey.generate(1024)
    PinOnFirstUse(path).missing_host_key(FakeClient(), "10.0.0.7", key)
    keys = paramiko.HostKeys(str(path))
    assert keys.lookup("10.0.0.7")[key.get_name()] == key
    assert remote.known_hosts_lines(path, "10.0.0.7") == [1]


def test_parallel_pinning_keeps_every_host(tmp_path):
    path = tmp_path / "known_hosts"
    keys = {f"10.0.0.{i}": paramiko.RSAKey.generate(1024) for i in range(8)}
    threads = [threading.Thread(target=PinOnFirstUse(path).missing_host_key, args=(FakeClient(), h, k))
               for h, k in keys.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pinned = paramiko.HostKeys(str(path))
    assert all(pinned.lookup(h)[k.get_name()] == k for h, k in keys.items())


def test_changed_key_message_names_host_and_line(tmp_path):
    path = tmp_path / "known_hosts"
    old, new = paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
    hk = paramiko.HostKeys()
    hk.add("10.0.0.6", old.get_name(), old)
    hk.add("[10.0.0.7]:2222", old.get_name(), old)
    hk.save(str(path))
    h = HostConnection("node01", "10.0.0.7", settings(tmp_path, port=2222, known_hosts=str(path)))
    err = remote.translate_error(h, BadHostKeyException("[10.0.0.7]:2222", new, old))
    assert err.host == "node01"
    assert "host key of 10.0.0.7:2222 changed" in str(err)
    assert f"remove line 2 of {path}" in str(err)
    assert f"ssh-keygen -R '[10.0.0.7]:2222' -f {path}" in str(err)


def test_hashed_known_hosts_entries_are_found(tmp_path):
    path = tmp_path / "known_hosts"
    key = paramiko.RSAKey.generate(1024)
    hashed = paramiko.HostKeys.hash_host("10.0.0.8")
    path.write_text(f"# comment\n{hashed} {key.get_name()} {key.get_base64()}\n")
    assert remote.known_hosts_lines(path, "10.0.0.8") == [2]
    assert remote.known_hosts_lines(path, "10.0.0.9") == []


def test_connection_loads_pins_and_installs_the_policy(tmp_path):
    path = tmp_path / "known_hosts"
    key = paramiko.RSAKey.generate(1024)
    hk = paramiko.HostKeys()
    hk.add("10.0.0.6", key.get_name(), key)
    hk.save(str(path))
    h = HostConnection("master", "10.0.0.6", settings(tmp_path, known_hosts=str(path)))
    assert h.conn.client.get_host_keys().lookup("10.0.0.6")[key.get_name()] == key
    assert isinstance(h.conn.client._policy, PinOnFirstUse)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("exc, expected", [
    (NoValidConnectionsError({("10.0.0.6", 22): OSError(111, "refused")}),
     "master: cannot connect to 10.0.0.6:22: connection refused or unreachable; is the host up and sshd running?"),
    (socket.timeout("timed out"),
     "master: no answer from 10.0.0.6:22 within 2.5s (ssh.connect_timeout); is the host up and the address right?"),
    (AuthenticationException("Authentication failed."), "master: SSH login as root to 10.0.0.6:22 failed with key"),
    (AuthFailure(result=None, prompt="[sudo] password: "), "master: sudo refused the password for root; give the right one in LABKIT_SUDO_PASSWORD"),
    (paramiko.SSHException("Error reading SSH protocol banner"),
     "master: SSH to 10.0.0.6:22 failed: SSHException: Error reading SSH protocol banner"),
])
def test_ssh_errors_become_clear_host_errors(tmp_path, exc, expected):
    h = HostConnection("master", "10.0.0.6", settings(tmp_path))
    assert str(remote.translate_error(h, exc)).startswith(expected)


def test_refused_port_on_loopback_is_a_clean_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    h = HostConnection("node02", "127.0.0.1", settings(tmp_path, port=port))
    with pytest.raises(HostError) as exc:
        h.run("true")
    assert str(exc.value) == (f"node02: cannot connect to 127.0.0.1:{port}: connection refused or "
                              "unreachable; is the host up and sshd running?")


def test_silent_port_times_out_within_connect_timeout(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts TCP, never speaks SSH
    try:
        h = HostConnection("node02", "127.0.0.1", settings(tmp_path, port=srv.getsockname()[1], connect_timeout=0.5))
        start = time.monotonic()
        with pytest.raises(HostError) as exc:
            h.run("true")
        assert time.monotonic() - start < 3
        assert str(exc.value).startswith("node02: ")
        assert "Traceback" not in str(exc.value)
    finally:
        srv.close()


def test_run_parallel_names_failures_and_keeps_other_results(tmp_path):
    hosts = [HostConnection(n, "h", settings(tmp_path)) for n in ("master", "node01", "node02")]
    seen = []

    def fn(h):
        if h.name == "node01":
            raise HostError("node01", "cannot connect to h:22")
        if h.name == "node02":
            raise KeyError("boom")  # a bug on one host must not hide the others
        return h.name.upper()

    out = remote.run_parallel(hosts, fn, on_done=lambda n, v, e: seen.append((n, v, e)))
    assert out.results == {"master": "MASTER"}
    assert out.failures["node01"] == "cannot connect to h:22"
    assert out.failures["node02"] == "KeyError: 'boom'"
    assert [s[0] for s in seen] == ["master", "node01", "node02"]


def test_settings_from_inventory_and_connect(tmp_path):
    inv = SimpleNamespace(
        path=str(tmp_path / "lab.yaml"),
        ssh=SimpleNamespace(user="lab", port=2200, key="keys/id", sudo=True, known_hosts="kh", connect_timeout=3),
        hosts=[SimpleNamespace(name="m", address="10.0.0.6", roles=["registry"], runtime="docker"),
               SimpleNamespace(name="n", address="10.0.0.7", roles=["worker"], runtime="containerd")])
    s = SSHSettings.from_inventory(inv)
    assert s == SSHSettings("lab", 2200, str(tmp_path / "keys/id"), True, str(tmp_path / "kh"), 3.0)
    conns = remote.connect(inv, names=["n"])
    assert list(conns) == ["n"] and conns["n"].address == "10.0.0.7" and conns["n"].use_sudo


def test_sudo_password_is_asked_once_up_front_in_connect(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr("sys.stdin", SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(remote.getpass, "getpass", lambda prompt: asked.append(prompt) or "typed")
    inv = SimpleNamespace(path=None, ssh=SimpleNamespace(user="lab", port=22, key=None, sudo=True,
                                                         known_hosts=str(tmp_path / "kh"), connect_timeout=3),
                          hosts=[SimpleNamespace(name=n, address="10.0.0.6", roles=[], runtime="docker")
                                 for n in ("a", "b")])
    remote.connect(inv)
    remote.connect(inv)
    assert asked == ["sudo password for lab on the lab hosts: "]
    assert remote.sudo_password("lab") == "typed"


def test_a_session_shares_one_connection_per_host_across_flows(tmp_path, monkeypatch):
    inv = SimpleNamespace(
        path=str(tmp_path / "lab.yaml"),
        ssh=SimpleNamespace(user="root", port=22, key=None, sudo=False, known_hosts="kh", connect_timeout=3),
        hosts=[SimpleNamespace(name="m", address="10.0.0.6"), SimpleNamespace(name="n", address="10.0.0.7")])
    closed = []
    monkeypatch.setattr(HostConnection, "close", lambda self: closed.append(self.name))
    assert remote.connect(inv)["m"] is not remote.connect(inv)["m"]  # without a session: new ones
    with remote.session(inv) as conns:
        first, second = remote.connect(inv), remote.connect(inv, names=["n"])
        assert first["m"] is conns["m"] and second == {"n": conns["n"]}
        remote.close_all(first)  # a flow ending inside the session leaves them open
        assert closed == []
    assert sorted(closed) == ["m", "n"]  # the session's end closes them
