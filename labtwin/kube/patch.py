"""Patches the API twin applies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic
merge patch (merge keys and the $patch / $setElementOrder / $retainKeys /
$deleteFromPrimitiveList directives, as in k8s.io/apimachinery/pkg/util/strategicpatch), and
server-side apply (the applied configuration merged like SMP, each manager's fields recorded in
metadata.managedFields as fieldsV1; fields a manager stops applying are removed; fields owned by
another manager with a different value are a conflict unless forced).

Merge keys come from the Go struct tags (patchMergeKey/patchStrategy) of the kinds the twin
serves; they are looked up by the trailing field names of a path (list indexes skipped)."""

from __future__ import annotations

import copy
import json
from typing import Any

from .store import now_rfc3339


class PatchError(Exception):
    """A patch that cannot be applied (the server answers 422 or 400 with this message)."""

    def __init__(self, message: str, code: int = 422):
        super().__init__(message)
        self.code = code


# (trailing field names) -> merge key; longest suffix wins. Lists not listed are atomic.
MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("containers",): "name",
    ("initContainers",): "name",
    ("ephemeralContainers",): "name",
    ("containers", "env"): "name",
    ("initContainers", "env"): "name",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("topologySpreadConstraints",): "topologyKey",
    ("resourceClaims",): "name",
    ("spec", "ports"): "port",          # Service
    ("ownerReferences",): "uid",
    ("conditions",): "type",
    ("status", "addresses"): "type",     # Node
    ("spec", "taints"): "key",           # Node
    ("podIPs",): "ip",
    ("hostIPs",): "ip",
    ("secrets",): "name",                # ServiceAccount
}
# lists of primitives merged as sets (patchStrategy:"merge")
MERGE_PRIMITIVES: set[tuple[str, ...]] = {("metadata", "finalizers")}
# maps with patchStrategy "retainKeys" (kubectl sends $retainKeys for these)
RETAIN_KEYS: set[tuple[str, ...]] = {("strategy",), ("updateStrategy",), ("volumes",)}


def merge_key(path: tuple[str, ...]) -> str | None:
    for n in range(len(path), 0, -1):
        k = MERGE_KEYS.get(path[-n:])
        if k:
            return k
    return None


def merges_primitives(path: tuple[str, ...]) -> bool:
    return any(path[-len(p):] == p for p in MERGE_PRIMITIVES if len(path) >= len(p))


# ---------------------------------------------------------------- RFC 7386

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# ---------------------------------------------------------------- RFC 6902

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}", 400)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError(f"doc is missing path: {path!r}: missing value", 422)
    return cur


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    return _walk(doc, parts[:-1], path), parts[-1]


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _pointer(path), path)


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-":
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), copy.deepcopy(value))
        else:
            raise PatchError(f"add operation does not apply: doc is missing path: {path!r}")
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"remove operation does not apply: doc is missing path: {path!r}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch",
                         400)
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path")
        if path is None:
            raise PatchError(f"operation missing path: {json.dumps(op)}", 400)
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            parts = _pointer(path)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent, last = _parent(doc, parts, path)
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op.get("value"))
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}", 400)
    return doc


# ---------------------------------------------------------------- strategic merge patch

def strategic_merge_patch(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch to original (neither is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(original, dict):
        original = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}", 422)
    result = copy.deepcopy(original)
    retain = patch.get("$retainKeys")
    orders: dict[str, list] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in (v or [])]
            continue
        if v is None:
            result.pop(k, None)
            continue
        sub = path + (k,)
        if isinstance(v, dict):
            merged = strategic_merge_patch(result.get(k), v, sub)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _merge_list(result.get(k), v, sub)
        else:
            result[k] = copy.deepcopy(v)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, merge_key(path + (field,)))
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list, path: tuple[str, ...]) -> list:
    original = original if isinstance(original, list) else []
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch
                if not (isinstance(x, dict) and "$patch" in x and len(x) == 1)]
    key = merge_key(path)
    if key and all(isinstance(x, dict) for x in patch):
        result = copy.deepcopy(original)
        for item in patch:
            if item.get("$patch") == "delete":
                result = [x for x in result
                          if not (isinstance(x, dict) and x.get(key) == item.get(key))]
                continue
            if key not in item:
                raise PatchError(f"map: {item} does not contain declared merge key: {key}")
            for i, x in enumerate(result):
                if isinstance(x, dict) and x.get(key) == item[key]:
                    result[i] = strategic_merge_patch(x, item, path)
                    break
            else:
                result.append(strategic_merge_patch({}, item, path))
        return result
    if merges_primitives(path):
        result = list(original)
        for x in patch:
            if x not in result:
                result.append(x)
        return result
    return copy.deepcopy(patch)


def _reorder(items: list, order: list, key: str | None) -> list:
    def ident(x):
        return x.get(key) if key and isinstance(x, dict) else x
    wanted = [ident(o) if isinstance(o, dict) else o for o in order]
    pos = {w: i for i, w in enumerate(wanted)}
    listed = sorted((x for x in items if ident(x) in pos), key=lambda x: pos[ident(x)])
    rest = [x for x in items if ident(x) not in pos]
    return listed + rest


# ---------------------------------------------------------------- server-side apply

def _item_key(item: dict, key: str) -> str:
    return "k:" + json.dumps({key: item.get(key)}, separators=(",", ":"))


def fieldset(obj: Any, path: tuple[str, ...] = ()) -> dict:
    """fieldsV1 of an applied configuration: every leaf and every keyed list element."""
    out: dict = {}
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        if not path and k in ("apiVersion", "kind"):
            continue
        if path == ("metadata",) and k in ("name", "namespace", "resourceVersion", "uid",
                                            "creationTimestamp", "managedFields", "generation"):
            continue
        sub = path + (k,)
        if isinstance(v, dict) and v:
            out[f"f:{k}"] = {".": {}, **fieldset(v, sub)} if path else fieldset(v, sub)
        elif isinstance(v, list):
            key = merge_key(sub)
            if key and all(isinstance(x, dict) for x in v):
                out[f"f:{k}"] = {_item_key(x, key): {".": {}, **fieldset(x, sub)} for x in v}
            elif merges_primitives(sub):
                out[f"f:{k}"] = {"v:" + json.dumps(x): {} for x in v}
            else:
                out[f"f:{k}"] = {}
        else:
            out[f"f:{k}"] = {}
    return out


def _fs_remove(live: Any, owned: dict, keep: dict, path: tuple[str, ...]) -> Any:
    """Remove from live the fields in owned that are not in keep (nor owned by others)."""
    if not isinstance(live, dict):
        return live
    for fk, sub in owned.items():
        if fk == "." or not fk.startswith("f:"):
            continue
        name = fk[2:]
        if name not in live:
            continue
        if fk not in keep:
            live.pop(name)
            continue
        val = live[name]
        ksub = keep[fk]
        if isinstance(val, dict):
            _fs_remove(val, sub, ksub, path + (name,))
        elif isinstance(val, list):
            key = merge_key(path + (name,))
            if key:
                kept = []
                for x in val:
                    ik = _item_key(x, key) if isinstance(x, dict) else None
                    if ik in sub and ik not in ksub:
                        continue
                    if ik in sub:
                        _fs_remove(x, sub[ik], ksub[ik], path + (name,))
                    kept.append(x)
                live[name] = kept
            elif merges_primitives(path + (name,)):
                live[name] = [x for x in val if ("v:" + json.dumps(x)) not in sub or
                              ("v:" + json.dumps(x)) in ksub]
    return live


def _fs_union(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _fs_union(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _fs_leaves(fs: dict, prefix: tuple = ()) -> set[tuple]:
    leaves = set()
    for k, v in fs.items():
        if k == ".":
            continue
        if v and any(kk != "." for kk in v):
            leaves |= _fs_leaves(v, prefix + (k,))
        else:
            leaves.add(prefix + (k,))
    return leaves


def _fs_subtract(fs: dict, leaves: set[tuple], prefix: tuple = ()) -> dict:
    out = {}
    for k, v in fs.items():
        if k == ".":
            out[k] = v
            continue
        if v and any(kk != "." for kk in v):
            sub = _fs_subtract(v, leaves, prefix + (k,))
            if any(kk != "." for kk in sub):
                out[k] = sub
        elif prefix + (k,) not in leaves:
            out[k] = v
    return out


def _value_at(obj: Any, leaf: tuple, path: tuple[str, ...] = ()) -> Any:
    cur = obj
    for part in leaf:
        if part.startswith("f:") and isinstance(cur, dict):
            path = path + (part[2:],)
            cur = cur.get(part[2:])
        elif part.startswith("k:") and isinstance(cur, list):
            want = json.loads(part[2:])
            cur = next((x for x in cur if isinstance(x, dict) and
                        all(x.get(k) == v for k, v in want.items())), None)
        elif part.startswith("v:"):
            return json.loads(part[2:]) in (cur or [])
        else:
            return None
    return cur


def _entry(manager: str, operation: str, api_version: str, fs: dict,
           subresource: str = "") -> dict:
    e = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now_rfc3339(),
         "fieldsType": "FieldsV1", "fieldsV1": fs}
    if subresource:
        e["subresource"] = subresource
    return e


def server_side_apply(live: dict | None, config: dict, manager: str, force: bool,
                      api_version: str) -> dict:
    """Merge an applied configuration into live (None for a new object) and record ownership.
    Raises PatchError(code=409) listing conflicting fields when another manager owns a field
    with a different value and force is false."""
    live = copy.deepcopy(live) if live else {}
    managed = [m for m in live.get("metadata", {}).get("managedFields") or []]
    new_fs = fieldset(config)
    mine = next((m for m in managed if m["manager"] == manager and m["operation"] == "Apply"),
                None)
    prev_fs = mine["fieldsV1"] if mine else {}
    # conflicts: fields other managers own whose value the config changes
    new_leaves = _fs_leaves(new_fs)
    conflicts = _all_conflicts(managed, mine, new_leaves, live, config)
    # the apiserver's lastAppliedManager: for manager "kubectl", fields client-side apply set
    # (in the last-applied annotation, unchanged since) do not conflict, so moving from
    # client-side to server-side apply with changed values works without --force-conflicts
    last = (live.get("metadata", {}).get("annotations") or {}).get(
        "kubectl.kubernetes.io/last-applied-configuration")
    forced_csa: list = []
    if conflicts and last and manager == "kubectl":
        try:
            last_obj = json.loads(last)
        except ValueError:
            last_obj = {}
        # allowed: fields of the last client-side apply that nobody has changed since
        csa = {leaf for leaf in _fs_leaves(fieldset(last_obj))
               if _value_at(last_obj, leaf) == _value_at(live, leaf)}
        forced_csa = [(m, leaf) for m, leaf in conflicts if leaf in csa]
        conflicts = [(m, leaf) for m, leaf in conflicts if leaf not in csa]
    if conflicts and not force:
        versions = {m["manager"]: m.get("apiVersion", api_version) for m in managed}
        raise PatchError(_conflict_message(conflicts, versions), 409)
    # remove fields this manager applied before and no longer applies, unless others own them
    others = {}
    for m in managed:
        if m is not mine:
            others = _fs_union(others, m.get("fieldsV1") or {})
    drop_candidates = _fs_subtract(prev_fs, new_leaves)
    drop = _fs_subtract(drop_candidates, _fs_leaves(others))
    body = {k: v for k, v in config.items()}
    result = _fs_remove(live, drop, {}, ()) if drop else live
    result = strategic_merge_patch(result, _strip_for_merge(body))
    # ownership: forced fields move to this manager
    taken = {leaf for _, leaf in conflicts} | {leaf for _, leaf in forced_csa}
    out_managed = []
    entry = _entry(manager, "Apply", api_version, new_fs)
    for m in managed:
        if m is mine:  # keeps its place, so a repeated apply is a no-op
            out_managed.append(entry)
            continue
        fs = m.get("fieldsV1") or {}
        if taken:
            fs = _fs_subtract(fs, taken)
        if any(k != "." for k in fs):
            out_managed.append({**m, "fieldsV1": fs})
    if mine is None:
        out_managed.insert(0, entry)
    result.setdefault("metadata", {})["managedFields"] = out_managed
    return result


def _path_text(leaf: tuple) -> str:
    """fieldpath as the apiserver prints it: .spec.containers[name="web"].image"""
    out = ""
    for part in leaf:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            kv = json.loads(part[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in kv.items()) + "]"
        elif part.startswith("v:"):
            out += f"[={part[2:]}]"
    return out


def _conflict_message(conflicts: list, versions: dict) -> str:
    n = len(conflicts)
    by_mgr: dict[str, list] = {}
    for mgr, leaf in conflicts:
        by_mgr.setdefault(mgr, []).append(leaf)
    if n == 1:
        mgr, leaf = conflicts[0]
        return (f'Apply failed with 1 conflict: conflict with "{mgr}" using '
                f'{versions.get(mgr, "")}: {_path_text(leaf)}')
    parts = []
    for mgr, leaves in by_mgr.items():
        head = f'conflict{"s" if len(leaves) > 1 else ""} with "{mgr}" using ' \
               f'{versions.get(mgr, "")}:'
        if len(leaves) == 1:
            parts.append(f"{head} {_path_text(leaves[0])}")
        else:
            parts.append(head + "".join(f"\n- {_path_text(lf)}" for lf in leaves))
    return f"Apply failed with {n} conflicts: " + "\n".join(parts)


def _all_conflicts(managed, mine, new_leaves, live, config) -> list[tuple[str, tuple]]:
    out = []
    for m in managed:
        if m is mine:
            continue
        shared = new_leaves & _fs_leaves(m.get("fieldsV1") or {})
        for leaf in sorted(shared):
            if _value_at(live, leaf) != _value_at(config, leaf) and \
                    not isinstance(_value_at(config, leaf), (dict, list)):
                out.append((m["manager"], leaf))
    return out


def _strip_for_merge(config: dict) -> dict:
    out = copy.deepcopy(config)
    md = out.get("metadata") or {}
    for k in ("managedFields", "resourceVersion", "uid", "creationTimestamp"):
        md.pop(k, None)
    return out


def record_update(old: dict | None, new: dict, manager: str, api_version: str,
                  subresource: str = "") -> None:
    """Record an Update operation: the fields that changed between old and new now belong to
    manager (as the real server does for create/update/patch)."""
    changed = fieldset(_changed(old or {}, new, ()))
    md = new.setdefault("metadata", {})
    managed = [m for m in (md.get("managedFields") or [])]
    if not any(k != "." for k in changed):
        md["managedFields"] = managed
        if not managed:
            md.pop("managedFields", None)
        return
    leaves = _fs_leaves(changed)
    out = []
    mine = None
    for m in managed:
        if m["manager"] == manager and m["operation"] == "Update" and \
                m.get("subresource", "") == subresource:
            mine = m
            continue
        fs = _fs_subtract(m.get("fieldsV1") or {}, leaves)
        if any(k != "." for k in fs):
            out.append({**m, "fieldsV1": fs})
    fs = _fs_union(mine["fieldsV1"], changed) if mine else changed
    out.append(_entry(manager, "Update", api_version, fs, subresource))
    md["managedFields"] = out


def _changed(old: Any, new: Any, path: tuple[str, ...]) -> Any:
    """The part of new that differs from old (keyed lists element-wise)."""
    if not isinstance(new, dict):
        return new
    out = {}
    for k, v in new.items():
        if path == () and k in ("apiVersion", "kind"):
            continue
        if path == ("metadata",) and k in ("managedFields", "resourceVersion", "uid",
                                            "creationTimestamp", "generation", "name",
                                            "namespace"):
            continue
        ov = old.get(k) if isinstance(old, dict) else None
        if ov == v:
            continue
        if isinstance(v, dict) and isinstance(ov, dict):
            sub = _changed(ov, v, path + (k,))
            if sub:
                out[k] = sub
        elif isinstance(v, list) and isinstance(ov, list) and merge_key(path + (k,)):
            key = merge_key(path + (k,))
            items = []
            for x in v:
                o = next((y for y in ov if isinstance(y, dict) and isinstance(x, dict)
                          and y.get(key) == x.get(key)), None)
                if o != x and isinstance(x, dict):
                    d = _changed(o or {}, x, path + (k,))
                    d[key] = x.get(key)
                    items.append(d)
            if items:
                out[k] = items
        else:
            out[k] = v
    return out
