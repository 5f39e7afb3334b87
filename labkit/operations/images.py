"""Build the web image tags on the registry host and push them (DESIGN.md step 5's image).

A tag is skipped when the registry already holds an image whose
``io.labkit.content-hash`` label equals the hash of (build context, base, tag),
so a re-run with unchanged inputs builds and pushes nothing.
"""
from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Iterator

from labkit.operations.base import Command, PutFile

HASH_LABEL = "io.labkit.content-hash"
CONTEXT_DIR = Path(__file__).resolve().parents[2] / "scripts" / "web-image"


def read_context(directory: str | Path = CONTEXT_DIR) -> dict[str, str]:
    """Relative path -> text of every file in the build context (text files only)."""
    root = Path(directory)
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            files[p.relative_to(root).as_posix()] = p.read_text()
    if "Dockerfile" not in files:
        raise FileNotFoundError(f"no Dockerfile in the build context {root}")
    return files


def context_hash(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


def content_hash(files: dict[str, str], base: str, tag: str) -> str:
    return hashlib.sha256(f"{context_hash(files)}\0{base}\0{tag}".encode()).hexdigest()


def build_images(*, files: dict[str, str], base: str, tags: list[str], image_ref,
                 in_registry: dict[str, dict | None]) -> Iterator[Command | PutFile]:
    """``image_ref(tag)`` -> "<registry>/<repo>:<tag>"; ``in_registry[tag]``: the pushed config or None."""
    q = shlex.quote
    todo = []
    for tag in tags:
        want = content_hash(files, base, tag)
        have = ((in_registry.get(tag) or {}).get("labels") or {}).get(HASH_LABEL)
        if have != want:
            todo.append((tag, want))
    if not todo:
        return
    workdir = f"/tmp/labkit-web-image-{context_hash(files)[:12]}"
    yield Command(f"rm -rf {q(workdir)} && mkdir -p {q(workdir)}", description="prepare build context")
    for name, text in files.items():
        yield PutFile(f"{workdir}/{name}", text, description=f"upload {name}")
    for tag, want in todo:
        ref = image_ref(tag)
        yield Command(
            f"docker build -q --build-arg {q('BASE=' + base)} --build-arg {q('VERSION=' + tag)} "
            f"--label {q(HASH_LABEL + '=' + want)} -t {q(ref)} {q(workdir)}",
            description=f"build {ref} from {base}",
        )
        yield Command(f"docker push {q(ref)}", description=f"push {ref}")
    yield Command(f"rm -rf {q(workdir)}", description="remove build context")
