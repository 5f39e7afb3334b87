"""Run the private registry container (DESIGN.md step 1), replaced only when it differs."""
from __future__ import annotations

import shlex
from typing import Iterator

from labkit.operations.base import Command

REGISTRY_DATA = "/var/lib/registry"  # where registry:2 keeps its blobs


def run_command(image: str, name: str, port: int, data_dir: str) -> str:
    q = shlex.quote
    return (f"docker run -d --name {q(name)} -p {int(port)}:5000 "
            f"-v {q(data_dir + ':' + REGISTRY_DATA)} --restart always {q(image)}")


def differences(container: dict, image: str, port: int, data_dir: str) -> list[str]:
    diffs = []
    if container.get("image") != image:
        diffs.append(f"image {container.get('image')} -> {image}")
    if container.get("ports") != {"5000/tcp": [str(port)]}:
        diffs.append(f"ports {container.get('ports')} -> 5000/tcp:{port}")
    if [data_dir, REGISTRY_DATA] not in (container.get("binds") or []):
        diffs.append(f"volume -> {data_dir}:{REGISTRY_DATA}")
    if container.get("restart") != "always":
        diffs.append(f"restart {container.get('restart')} -> always")
    return diffs


def registry_container(*, image: str, name: str, port: int, data_dir: str,
                       container: dict | None, data_dir_exists: bool) -> Iterator[Command]:
    q = shlex.quote
    if not data_dir_exists:
        yield Command(f"mkdir -p {q(data_dir)}", description=f"create {data_dir}")
    if container is None:
        yield Command(run_command(image, name, port, data_dir), description=f"run {name} ({image})")
        return
    diffs = differences(container, image, port, data_dir)
    if diffs:
        yield Command(f"docker rm -f {q(name)}", description=f"remove {name}: " + "; ".join(diffs))
        yield Command(run_command(image, name, port, data_dir), description=f"run {name} ({image})")
    elif not container.get("running"):
        yield Command(f"docker start {q(name)}", description=f"start {name} (was {container.get('status')})")
