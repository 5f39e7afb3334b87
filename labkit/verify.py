"""Verify: pods, PVCs, PVs and one curl of every pod (from master) against what each ordinal expects.

Pure: the facts and the curl output come in, rows and an ok flag go out. The curl of all pods
is ONE command for any replica count (``curl_all_command``), answered as one line per pod:
``URL<TAB>http_code<TAB>curl_exit<TAB>base64(body)``.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from labkit.errors import OperationError
from labkit.expected import Expected
from labkit.operations.base import Command
from labkit.shell import quote

# What a curl exit code means, for the table.
CURL_ERRORS = {6: "cannot resolve host", 7: "connection refused", 28: "timed out",
               52: "empty reply", 56: "connection reset"}


def _url(ip: str, port: int) -> str:
    addr = ipaddress.ip_address(ip)  # refuses anything that is not an IP address
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"http://{host}:{int(port)}/"


def curl_all_command(pod_ips, port: int = 80, timeout: int = 5) -> Command:
    """One shell command (run on the control plane) that fetches / from every pod IP.

    The curls run in parallel (a dead pod costs ``timeout`` once, not once per pod) into a
    private temp dir, then one line per pod is printed in the given order. Bodies are
    base64-encoded so any content (newlines, tabs, binary) survives the framing.
    """
    urls = [_url(ip, port) for ip in pod_ips]
    if not urls:
        raise OperationError("no pod IPs to curl")
    t = int(timeout)
    script = (
        'd=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; n=0; '
        f'for u in {" ".join(quote(u) for u in urls)}; do n=$((n+1)); '
        f'( code=$(curl -s -o "$d/$n.body" -w \'%{{http_code}}\' --connect-timeout {t} -m {t} "$u"); rc=$?; '
        'printf \'%s\\t%s\\t%s\\t\' "$u" "${code:-000}" "$rc" > "$d/$n.head" ) & '
        'done; wait; i=0; '
        'while [ $i -lt $n ]; do i=$((i+1)); cat "$d/$i.head"; '
        'if [ -s "$d/$i.body" ]; then base64 -w0 < "$d/$i.body"; fi; printf \'\\n\'; done'
    )
    return Command("sh -c " + quote(script), sudo=False,
                   description=f"curl {len(urls)} pod(s) from the control plane")


@dataclass(frozen=True)
class CurlResult:
    ip: str
    http_code: int
    exit_code: int
    body: str

    @property
    def error(self) -> str | None:
        if self.exit_code != 0:
            return CURL_ERRORS.get(self.exit_code, f"curl exit {self.exit_code}")
        if self.http_code != 200:
            return f"HTTP {self.http_code}"
        return None


def parse_curl(stdout: str) -> dict[str, CurlResult]:
    """pod IP -> CurlResult from the output of ``curl_all_command``."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].startswith("http://"):
            continue  # banners, motd: not ours
        url, code, rc, b64 = parts
        host = urlsplit(url).hostname
        try:
            body = base64.b64decode(b64, validate=True).decode("utf-8", errors="replace")
            out[host] = CurlResult(host, int(code), int(rc), body)
        except (ValueError, binascii.Error):
            raise OperationError(f"cannot parse the curl output line {line[:200]!r}") from None
    return out


@dataclass
class Row:
    pod: str
    ordinal: int
    node: str | None = None
    pod_ip: str | None = None
    image_tag: str | None = None
    pvc: str | None = None
    pv: str | None = None
    pv_directory: str | None = None
    expected: str | None = None
    actual: str | None = None
    result: str = "ok"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    rows: list[Row]
    problems: list[str]  # not tied to one pod (extra pods, shared volumes ...)
    commands: dict[str, int] = field(default_factory=dict)  # SSH round trips per host (benchmarks)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.rows)

    def failure(self, most: int = 4) -> str:
        """One line naming what is wrong: each bad pod with its problems, then the set's own problems
        (the first ``most``; the table above has the rest)."""
        items = [f"{r.pod}: {', '.join(r.problems)}" for r in self.rows if not r.ok] + self.problems
        shown = "; ".join(items[:most]) + (f"; and {len(items) - most} more" if len(items) > most else "")
        bad = sum(not r.ok for r in self.rows)
        counts = ", ".join(part for part in (f"{bad} pod(s) wrong" if bad else "",
                                             f"{len(self.problems)} problem(s) with the set" if self.problems else "")
                           if part)
        return f"verify failed ({counts}): {shown}"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems,
                "rows": [{**asdict(r), "ok": r.ok} for r in self.rows]}


def _show(text: str | None) -> str | None:
    return None if text is None else text.strip()


def verify(pods, pvcs, pvs, curls: dict[str, CurlResult], expectations: list[Expected],
           set_name: str, claim_template: str, namespace: str = "default",
           storage_class: str | None = None, written: dict[str, str] | None = None) -> Report:
    """Compare the gathered facts with ``expectations`` (one per ordinal). ``written``: PV
    ``spec.nfs.path`` -> the content labkit last wrote there; a pod on that PV must serve it."""
    written = written or {}
    pods_by_ord = {p.ordinal: p for p in pods if p.ordinal is not None}
    pvc_by_name = {c.name: c for c in pvcs}
    pv_by_name = {v.name: v for v in pvs}
    rows, problems = [], []
    ordinals = {e.ordinal for e in expectations}
    for p in pods:
        if p.ordinal not in ordinals:
            problems.append(f"pod {p.name} (ordinal {p.ordinal}) exists but the StatefulSet wants "
                            f"{len(expectations)} replica(s)")
    claim_of_pv: dict[str, list[str]] = {}
    dir_of: dict[str, list[str]] = {}
    for e in expectations:
        name = f"{set_name}-{e.ordinal}"
        claim = f"{claim_template}-{set_name}-{e.ordinal}"
        row = Row(pod=name, ordinal=e.ordinal, pvc=claim, expected=_show(e.content))
        rows.append(row)
        want = e.content  # unless labkit wrote something else to this PV (below)
        pod = pods_by_ord.get(e.ordinal)
        if pod is None:
            row.problems.append("pod missing")
        else:
            row.node, row.pod_ip, row.image_tag = pod.node, pod.pod_ip, pod.tag
            if pod.tag != e.tag:
                row.problems.append(f"image tag {pod.tag}, expected {e.tag}")
            if e.revision and pod.revision != e.revision:
                row.problems.append(f"revision {pod.revision}, expected {e.revision}")
            if not pod.ready:
                row.problems.append(f"not ready ({pod.waiting_reason or pod.phase})")
            if claim not in pod.pvcs:
                row.problems.append(f"pod does not mount {claim}")
        pvc = pvc_by_name.get(claim)
        if pvc is None:
            row.problems.append("PVC missing")
        else:
            if pvc.phase != "Bound":
                row.problems.append(f"PVC {pvc.phase}")
            if storage_class and pvc.storage_class != storage_class:
                row.problems.append(f"PVC storage class {pvc.storage_class}, expected {storage_class}")
            pv = pv_by_name.get(pvc.volume) if pvc.volume else None
            if pvc.volume and pv is None:
                row.problems.append(f"PV {pvc.volume} missing")
            if pv is not None:
                row.pv, row.pv_directory = pv.name, pv.nfs_path
                if pv.nfs_path in written:
                    want = written[pv.nfs_path]
                    row.expected = _show(want)
                claim_of_pv.setdefault(pv.name, []).append(claim)
                if pv.nfs_path:
                    dir_of.setdefault(pv.nfs_path, []).append(claim)
                else:
                    row.problems.append("PV has no spec.nfs.path")
                if (pv.claim_namespace, pv.claim_name) != (namespace, claim):
                    row.problems.append(f"PV claimed by {pv.claim_namespace}/{pv.claim_name}")
        if pod is not None and pod.pod_ip:
            got = curls.get(pod.pod_ip)
            if got is None:
                row.problems.append("not curled")
            elif got.error:
                row.actual = got.error
                row.problems.append(got.error)
            else:
                row.actual = _show(got.body)
                if got.body.strip() != want.strip():
                    row.problems.append("content differs")
        elif pod is not None:
            row.problems.append("no pod IP")
    for pv_name, claims in claim_of_pv.items():
        if len(claims) > 1:
            problems.append(f"PV {pv_name} is used by several PVCs: {', '.join(claims)}")
    for directory, claims in dir_of.items():
        if len(claims) > 1:
            problems.append(f"directory {directory} is shared by {', '.join(claims)}")
    for row in rows:
        row.result = "ok" if row.ok else "; ".join(row.problems)
    return Report(rows, problems)
