"""Host operations as data (tests/data/operations/host/*.json, containerd's in
tests/data/operations/containerd/*.json): facts in -> exact changes out.

"Already right" facts give no change at all; each drift gives exactly the commands
and file writes needed, in order; bad input raises OperationError with its message.
containerd's config.toml comes as a real file (``toml``: a file beside the case) or a recorded
fact (``recorded``: tests/data/facts/<name>.json); its PutFile is compared as the ``diff`` it
makes, checked by key (``keys``) and for the comments it keeps; a hosts.toml as parsed ``toml``.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path

import pytest

from labkit.errors import OperationError
from labkit.facts.containerd import parse_config_toml
from labkit.operations import containerd, docker, images, nfs, registry
from labkit.operations.base import Command, PutFile
from test_containerd_config import check_config, recorded_config

DATA = Path(__file__).resolve().parents[1] / "data" / "operations" / "host"
CASES = sorted(DATA.glob("*.json")) + sorted((DATA.parent / "containerd").glob("*.json"))
MODULES = {"registry": registry, "docker": docker, "containerd": containerd, "nfs": nfs}


def kwargs_of(case: dict, here: Path) -> dict:
    kwargs = dict(case["kwargs"])
    kwargs.update({k: parse_config_toml((here / name).read_text()) for k, name in case.get("toml", {}).items()})
    kwargs.update({k: recorded_config(name) for k, name in case.get("recorded", {}).items()})
    return kwargs


def diff(before: str, after: str) -> list[str]:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in lines if not line.startswith(("---", "+++", "@@"))]


def as_data(change, expected: dict | None = None, before: str = ""):
    """A change in the form its expected item uses."""
    expected = expected or {}
    if isinstance(change, Command):
        return {"command": change.command}
    assert isinstance(change, PutFile)
    out = {"put": change.path}
    if "description" in expected:
        out["description"] = change.description
    if "diff" in expected:
        check_config(before, change.content, expected.get("keys", {}))
        out.update(diff=diff(before, change.content), keys=expected.get("keys"))
    elif "keys" in expected:  # a new config.toml
        check_config("", change.content, expected["keys"])
        out.update(keys=expected["keys"], content=change.content)
    elif "toml" in expected:
        out["toml"] = tomllib.loads(change.content)
    else:
        out["content"] = change.content
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_operation(path):
    case = json.loads(path.read_text())
    module, name = case["operation"].split(".")
    op = getattr(MODULES[module], name)
    kwargs = kwargs_of(case, path.parent)
    if "error" in case:
        with pytest.raises(OperationError) as exc:
            list(op(**kwargs))
        assert case["error"] in str(exc.value)
        return
    before = next((v["raw"] or "" for v in kwargs.values() if isinstance(v, dict) and "raw" in v), "")
    changes, wanted = list(op(**kwargs)), case["changes"]
    assert [as_data(c, w, before) for c, w in zip(changes, wanted)] == wanted[:len(changes)]
    assert len(changes) == len(wanted), [as_data(c, {}, before) for c in changes]


def test_every_already_right_case_is_empty():
    right = [p for p in CASES if "already-right" in p.stem]
    assert len(right) >= 5
    for p in right:
        assert json.loads(p.read_text())["changes"] == []


# ---- images: the skip logic depends on a hash, so it is tested in code


FILES = {"Dockerfile": "ARG BASE=httpd:2.4\nFROM ${BASE}\n", "index.html": "hi\n"}
REF = "192.168.20.6:5000/ljz:{}".format


def test_images_build_and_push_missing_tags():
    changes = list(images.build_images(files=FILES, base="httpd:2.4", tags=["v1", "v2"], image_ref=REF,
                                       in_registry={"v1": None, "v2": None}))
    d = f"/tmp/labkit-web-image-{images.context_hash(FILES)[:12]}"
    h1, h2 = (images.content_hash(FILES, "httpd:2.4", t) for t in ("v1", "v2"))
    assert [as_data(c) for c in changes] == [
        {"command": f"rm -rf {d} && mkdir -p {d}"},
        {"put": f"{d}/Dockerfile", "content": FILES["Dockerfile"]},
        {"put": f"{d}/index.html", "content": FILES["index.html"]},
        {"command": f"docker build -q --build-arg BASE=httpd:2.4 --build-arg VERSION=v1 "
                    f"--label io.labkit.content-hash={h1} -t 192.168.20.6:5000/ljz:v1 {d}"},
        {"command": "docker push 192.168.20.6:5000/ljz:v1"},
        {"command": f"docker build -q --build-arg BASE=httpd:2.4 --build-arg VERSION=v2 "
                    f"--label io.labkit.content-hash={h2} -t 192.168.20.6:5000/ljz:v2 {d}"},
        {"command": "docker push 192.168.20.6:5000/ljz:v2"},
        {"command": f"rm -rf {d}"},
    ]


def test_images_skip_tags_already_pushed_with_same_content():
    pushed = {t: {"labels": {images.HASH_LABEL: images.content_hash(FILES, "httpd:2.4", t)}} for t in ("v1", "v2")}
    assert list(images.build_images(files=FILES, base="httpd:2.4", tags=["v1", "v2"], image_ref=REF,
                                    in_registry=pushed)) == []
    # only v2 rebuilt when only its content differs
    pushed["v2"] = {"labels": {images.HASH_LABEL: "stale"}}
    cmds = [c.command for c in images.build_images(files=FILES, base="httpd:2.4", tags=["v1", "v2"],
                                                   image_ref=REF, in_registry=pushed) if isinstance(c, Command)]
    assert any("VERSION=v2" in c for c in cmds) and not any("VERSION=v1" in c for c in cmds)


def test_images_hash_follows_context_base_and_tag():
    h = images.content_hash(FILES, "httpd:2.4", "v1")
    assert h != images.content_hash(FILES, "httpd:2.4", "v2")
    assert h != images.content_hash(FILES, "mirror/httpd:2.4", "v1")
    assert h != images.content_hash(dict(FILES, **{"index.html": "other\n"}), "httpd:2.4", "v1")


def test_images_quote_hostile_base():
    changes = list(images.build_images(files=FILES, base="httpd:2.4;reboot", tags=["v1"], image_ref=REF,
                                       in_registry={}))
    assert "--build-arg 'BASE=httpd:2.4;reboot'" in changes[3].command


def test_repo_build_context_has_the_dockerfile_contract():
    files = images.read_context()
    df = files["Dockerfile"]
    assert "ARG BASE=httpd:2.4" in df and "FROM ${BASE}" in df and "VERSION" in df
