"""The images an offline lab would have pre-pulled, built from this machine's own files.

No registry is reachable, so each image is a single-layer `docker save` archive written
directly (manifest.json + config + layer.tar), built once into <state>/cache/images/<key>/ and
loaded into every host's dockerd through the Docker API on the host's socket.
  registry:2   Debian's docker-registry (distribution 2.8) + its libs and the stock config
  httpd:2.4    the machine's apache2 + ldd libs (+ libgcc_s), DocumentRoot
               /usr/local/apache2/htdocs on port 80, exec'ing CMD (fast `docker stop`)
The NFS provisioner's image is built from upstream-contract Go code with the cluster
(labtwin/k8s/images.py) and loaded into master's docker only.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from . import host as hostmod
from .config import TwinConfig, TwinError

BUILD_VERSION = "3"
MTIME = 1_700_000_000  # fixed: identical inputs give identical image IDs
CREATED = "2023-11-14T22:13:20Z"
PROVISIONER_TAG = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
APACHE_MODULES = ("mpm_event", "authn_core", "authz_core", "authz_host", "alias", "dir", "mime",
                  "autoindex", "env", "headers", "setenvif", "filter")
SHELL_TOOLS = ("/bin/sh", "/bin/cat", "/bin/ls", "/bin/mkdir", "/bin/rm", "/bin/cp", "/bin/mv",
               "/bin/chmod", "/bin/chown", "/bin/echo", "/bin/sleep", "/usr/bin/env")
# Inputs whose change must rebuild the cache.
ANCHORS = ("/usr/sbin/apache2", "/usr/lib/apache2/modules", "/usr/bin/docker-registry",
           "/bin/dash", "/lib/x86_64-linux-gnu/libc.so.6", "/etc/mime.types")


@dataclass
class Image:
    tag: str
    config: dict
    files: dict[str, object] = field(default_factory=dict)  # path -> Path | bytes | ("dir",) | ("link", t)
    modes: dict[str, int] = field(default_factory=dict)

    def add_file(self, path: str, src: Path | bytes, mode: int | None = None) -> None:
        self.files[path] = src
        if mode is not None:
            self.modes[path] = mode

    def add_link(self, path: str, target: str) -> None:
        self.files[path] = ("link", target)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self.files[path] = ("dir",)
        self.modes[path] = mode

    def add_binary(self, src: str, dest: str | None = None) -> None:
        """A dynamically linked program and every library ldd lists (copied, symlinks resolved)."""
        self.add_file(dest or src, Path(src).resolve(), 0o755)
        for lib in ldd(src):
            self.add_file(lib, Path(lib).resolve(), 0o755)


def ldd(path: str) -> list[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise TwinError(f"ldd {path} failed: {out.stderr.strip()}: is the package installed?")
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.append(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the dynamic loader
    return libs


def _base_files(img: Image) -> None:
    for d in ("/etc", "/tmp", "/var", "/usr", "/bin", "/lib"):
        img.add_dir(d, 0o1777 if d == "/tmp" else 0o755)
    img.add_file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                 b"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    img.add_file("/etc/group", b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n")
    for tool in SHELL_TOOLS:
        img.add_binary(tool)


def registry_image() -> Image:
    img = Image("registry:2", {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": ["/bin/registry", "serve"], "Cmd": ["/etc/docker/registry/config.yml"],
        "ExposedPorts": {"5000/tcp": {}}, "Volumes": {"/var/lib/registry": {}},
    })
    _base_files(img)
    img.add_binary("/usr/bin/docker-registry", "/bin/registry")
    img.add_dir("/var/lib/registry")
    img.add_file("/etc/docker/registry/config.yml", (
        "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n"
        "    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\n"
        "http:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
        "health:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n").encode())
    return img


HTTPD_CONF = """\
# httpd:2.4 as built by labtwin from Debian's apache2 (layout of the official image)
ServerRoot "/usr/local/apache2"
Listen 80
{loads}
User daemon
Group daemon
ServerName localhost
ServerAdmin you@example.com
<Directory />
    AllowOverride none
    Require all denied
</Directory>
DocumentRoot "/usr/local/apache2/htdocs"
<Directory "/usr/local/apache2/htdocs">
    Options Indexes FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
DirectoryIndex index.html
<Files ".ht*">
    Require all denied
</Files>
PidFile logs/httpd.pid
ErrorLog /proc/self/fd/2
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog /proc/self/fd/1 common
TypesConfig /etc/mime.types
"""


def httpd_image() -> Image:
    img = Image("httpd:2.4", {
        "Env": ["PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HTTPD_PREFIX=/usr/local/apache2"],
        "Cmd": ["httpd", "-DFOREGROUND"],  # exec form: httpd is PID 1, `docker stop` is quick
        "WorkingDir": "/usr/local/apache2", "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGWINCH",
    })
    _base_files(img)
    img.add_binary("/usr/sbin/apache2", "/usr/local/apache2/bin/httpd")
    loads = []
    for m in APACHE_MODULES:
        src = f"/usr/lib/apache2/modules/mod_{m}.so"
        img.add_binary(src, f"/usr/local/apache2/modules/mod_{m}.so")
        loads.append(f"LoadModule {m}_module modules/mod_{m}.so")
    gcc_s = Path("/lib/x86_64-linux-gnu/libgcc_s.so.1")  # dlopen'ed by glibc (pthread_cancel); ldd misses it
    if gcc_s.exists():
        img.add_file(str(gcc_s), gcc_s.resolve(), 0o755)
    # Debian's binary reads this name if started without -f; make it the official path too.
    img.add_file("/usr/local/apache2/conf/httpd.conf", HTTPD_CONF.format(loads="\n".join(loads)).encode())
    img.add_file("/etc/apache2/apache2.conf", b"Include /usr/local/apache2/conf/httpd.conf\n")
    img.add_file("/etc/mime.types", Path("/etc/mime.types"))
    img.add_dir("/usr/local/apache2/logs")
    img.add_file("/usr/local/apache2/htdocs/index.html", b"<html><body><h1>It works!</h1></body></html>\n")
    return img


def _add_parents(tar: tarfile.TarFile, path: str, seen: set[str]) -> None:
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in seen:
            seen.add(d)
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)


def layer_bytes(img: Image) -> bytes:
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(img.files):
            src = img.files[path]
            name = path.strip("/")
            _add_parents(tar, path, seen)
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if isinstance(src, tuple) and src[0] == "dir":
                if name in seen:
                    continue
                seen.add(name)
                info.type, info.mode = tarfile.DIRTYPE, img.modes.get(path, 0o755)
                tar.addfile(info)
                continue
            if isinstance(src, tuple) and src[0] == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, src[1], 0o777
                tar.addfile(info)
                continue
            info.mode = img.modes.get(path, 0o644)
            if isinstance(src, Path):  # streamed: a Kubernetes binary is hundreds of MB
                info.size = src.stat().st_size
                with open(src, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                info.size = len(src)
                tar.addfile(info, io.BytesIO(src))
    return buf.getvalue()


def save_archive(img: Image, out: Path) -> None:
    """Write a `docker save` style archive that `docker load` (API /images/load) accepts."""
    layer = layer_bytes(img)
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": CREATED, "config": img.config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": CREATED, "created_by": "labtwin: built from this machine's packages"}],
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{config_id}.json", "RepoTags": [img.tag],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w") as tar:
        for name, data in ((f"{diff_id}/layer.tar", layer), (f"{config_id}.json", config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)


BUILDERS = {"registry.tar": registry_image, "httpd.tar": httpd_image}


def cache_key() -> str:
    h = hashlib.sha256(BUILD_VERSION.encode() + Path(__file__).read_bytes())
    for a in ANCHORS:
        try:
            st = Path(a).stat()
        except FileNotFoundError:
            raise TwinError(f"{a} is missing: install the twin's Debian packages first "
                            "(apache2, docker-registry, dash, media-types)") from None
        h.update(f"{a}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def image_dir(cfg: TwinConfig) -> Path:
    return cfg.cache_dir / "images" / cache_key()


def tarballs(cfg: TwinConfig) -> list[Path]:
    return [image_dir(cfg) / n for n in BUILDERS]


def ensure_built(cfg: TwinConfig) -> bool:
    """Build missing archives; True if anything was built."""
    d = image_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    built = False
    for name, builder in BUILDERS.items():
        if not (d / name).exists():
            save_archive(builder(), d / name)
            built = True
    return built


def load(init_pid: int, archives: list[Path], hostname: str) -> None:
    for tar in archives:
        with open(tar, "rb") as fh:
            status, body = hostmod.docker_request(
                init_pid, "POST", "/images/load?quiet=1", body=fh,
                headers={"Content-Type": "application/x-tar",
                         "Content-Length": str(tar.stat().st_size)}, timeout=120)
        if status != 200 or b'"error' in body:
            raise TwinError(f"{hostname}: docker load {tar.name} failed ({status}): "
                            f"{body.decode(errors='replace')[:300]}")
