"""pyinfra's flow over the lab: connect -> gather facts -> plan -> print -> (stop in plan mode) -> apply.

A ``Step`` names the facts it needs and a planner (an operation generator fed
with those facts). All facts of one host are read in a single SSH round trip;
hosts run in parallel; output is grouped per host. Plan mode reads facts only:
no command that changes anything is sent to any host.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from labkit import ui
from labkit.errors import HostError, HostsFailed, LabkitError
from labkit.facts.base import Fact, FactResult
from labkit.operations.base import Command, HostPlan, PutFile, Upload, Wait
from labkit.remote import HostConnection, run_parallel


@dataclass
class Step:
    name: str
    facts: dict[str, Fact]
    plan: Callable[[dict[str, Any]], Iterable[Command | PutFile | Upload | Wait]]


@dataclass(frozen=True)
class FactError:
    """A fact that could not be read (only returned by ``gather(..., tolerant=True)``)."""

    fact: str
    message: str

    def __bool__(self) -> bool:  # so `if facts["x"]:` treats it as missing
        return False


# ------------------------------------------------------------------ gathering


def batch_script(facts: list[Fact], token: str) -> str:
    """One shell script printing each fact's stdout, exit code and stderr between markers.

    Each fact runs in its own subshell so its ``exit`` ends only itself.
    """
    parts = ['__e=$(mktemp) || exit 1']
    for i, fact in enumerate(facts):
        m = f"@@{token}:{i}"
        parts.append(
            f"printf '%s\\n' '{m}:out'; ( {fact.build()} ) 2>\"$__e\" </dev/null; __rc=$?; "
            f"printf '\\n%s%s\\n' '{m}:err:' \"$__rc\"; cat \"$__e\"; printf '\\n%s\\n' '{m}:end'"
        )
    parts.append('rm -f "$__e"')
    return "\n".join(parts)


def parse_batch(output: str, count: int, token: str) -> list[FactResult]:
    results = []
    for i in range(count):
        m = f"@@{token}:{i}"
        start = output.index(f"{m}:out\n") + len(f"{m}:out\n")
        err_at = output.index(f"\n{m}:err:", start)
        stdout = output[start:err_at]
        rc_start = err_at + len(f"\n{m}:err:")
        rc_end = output.index("\n", rc_start)
        exited = int(output[rc_start:rc_end])
        end_at = output.index(f"\n{m}:end\n", rc_end)
        stderr = output[rc_end + 1:end_at]
        results.append(FactResult(stdout=stdout, stderr=stderr, exited=exited))
    return results


def gather(host: HostConnection, facts: dict[str, Fact], *, tolerant: bool = False) -> dict[str, Any]:
    """Read ``facts`` on ``host`` in one SSH command -> {key: processed value}.

    Under ``ssh.sudo`` as a non-root user, the facts that need root and the others go in two
    commands: a batch wholly under sudo would run kubectl as root, with root's kubeconfig.
    A fact whose exit code is not in its ``ok_exit_codes`` raises ``HostError``
    naming it, or with ``tolerant`` becomes a ``FactError`` value.
    """
    if not getattr(host, "use_sudo", False):
        return _gather_batch(host, facts, any(f.sudo for f in facts.values()), tolerant)
    out: dict[str, Any] = {}
    for sudo in (True, False):
        out.update(_gather_batch(host, {k: f for k, f in facts.items() if f.sudo == sudo}, sudo, tolerant))
    return {k: out[k] for k in facts}


def _gather_batch(host: HostConnection, facts: dict[str, Fact], sudo: bool, tolerant: bool) -> dict[str, Any]:
    if not facts:
        return {}
    keys = list(facts)
    items = [facts[k] for k in keys]
    token = secrets.token_hex(6)
    res = host.run(batch_script(items, token), sudo=sudo)
    try:
        raw = parse_batch(res.stdout, len(items), token)
    except (ValueError, IndexError):
        raise HostError(host.name, f"could not read facts: unexpected output {res.stdout[-200:]!r} "
                                   f"{res.stderr[-200:]!r}") from None
    out: dict[str, Any] = {}
    for key, fact, result in zip(keys, items, raw):
        name = type(fact).__name__
        if result.exited not in fact.ok_exit_codes:
            detail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            msg = f"reading {name} failed (exit {result.exited}): {detail}"
            if tolerant:
                out[key] = FactError(name, msg)
                continue
            raise HostError(host.name, msg)
        try:
            out[key] = fact.process(result)
        except LabkitError as exc:
            if tolerant:
                out[key] = FactError(name, str(exc))
                continue
            raise HostError(host.name, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a parser error names the fact, no traceback
            msg = f"could not parse {name}: {exc.__class__.__name__}: {exc}"
            if tolerant:
                out[key] = FactError(name, msg)
                continue
            raise HostError(host.name, msg) from None
    return out


# ------------------------------------------------------------------ planning and applying


@dataclass
class HostOutcome:
    host: str
    plans: list[HostPlan] = field(default_factory=list)
    applied: list[tuple[str, str, str]] = field(default_factory=list)  # (step, status, detail)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return any(not p.no_change for p in self.plans)


@dataclass
class RunReport:
    title: str
    plan_only: bool
    hosts: dict[str, HostOutcome] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, str]:
        return {h: o.error for h, o in self.hosts.items() if o.error}

    @property
    def changed_hosts(self) -> list[str]:
        return [h for h, o in self.hosts.items() if o.changed]

    def waits(self, host: str) -> list[Wait]:
        """The waits the plan of ``host`` asks for, in order (the flow runs them after the apply)."""
        outcome = self.hosts.get(host)
        return [w for p in outcome.plans for w in p.waits] if outcome and not outcome.error else []

    def raise_for_failures(self) -> None:
        if self.failures:
            raise HostsFailed(self.title, self.failures, {h: o for h, o in self.hosts.items() if not o.error})


def describe(change: Command | PutFile | Upload | Wait) -> str:
    if isinstance(change, Wait):
        return change.description
    if isinstance(change, Upload):
        return change.description or f"upload {change.local} to {change.path}"
    if isinstance(change, PutFile):
        return f"write {change.path}" + (f" ({change.description})" if change.description else "")
    return change.description or change.command


def plan_host(host: HostConnection, steps: list[Step]) -> list[HostPlan]:
    facts: dict[str, Fact] = {}
    for i, step in enumerate(steps):
        for key, fact in step.facts.items():
            facts[f"{i}:{key}"] = fact
    gathered = gather(host, facts)
    plans = []
    for i, step in enumerate(steps):
        mine = {key: gathered[f"{i}:{key}"] for key in step.facts}
        try:
            changes = list(step.plan(mine))
        except LabkitError as exc:
            raise HostError(host.name, f"{step.name}: {exc}") from None
        plans.append(HostPlan(host=host.name, operation=step.name, changes=changes))
    return plans


def apply_change(host: HostConnection, change: Command | PutFile | Upload) -> None:
    if isinstance(change, Upload):
        with open(change.local, "rb") as fh:
            host.put_stream(fh, change.path)
    elif isinstance(change, PutFile):
        host.put_text(change.path, change.content, mode=change.mode, backup_suffix=change.backup_suffix)
    else:
        host.run(change.command, sudo=change.sudo, ok_exit_codes=change.ok_exit_codes)


def apply_host(host: HostConnection, plans: list[HostPlan], progress: ui.HostProgress) -> list[tuple[str, str, str]]:
    done = []
    for plan in plans:
        if plan.no_change:
            done.append((plan.operation, "no change", ""))
            continue
        for change in plan.changes:
            if isinstance(change, Wait):  # the flow waits, after every host is applied
                continue
            progress.update(host.name, f"{plan.operation}: {describe(change)}")
            try:
                apply_change(host, change)
            except HostError as exc:
                msg = exc.detail if exc.host == host.name else str(exc)
                raise HostError(host.name, f"{plan.operation}: {describe(change)}: {msg}") from None
        done.append((plan.operation, "changed", f"{sum(not isinstance(c, Wait) for c in plan.changes)} change(s)"))
    return done


def run(hosts: dict[str, HostConnection], steps: dict[str, list[Step]], *, title: str,
        plan_only: bool = False) -> RunReport:
    """Gather, plan, print the plan, and (unless ``plan_only``) apply, on every host with steps."""
    report = RunReport(title=title, plan_only=plan_only)
    targets = [hosts[name] for name in steps if steps[name]]
    for h in targets:
        report.hosts[h.name] = HostOutcome(h.name)

    ui.heading(f"{title}: gathering facts and planning on {', '.join(h.name for h in targets)}")
    with ui.host_progress([h.name for h in targets], "plan") as progress:
        def on_plan(name, plans, err):
            if err is not None:
                progress.done(name, "failed", err)
            else:
                n = sum(not p.no_change and len(p.changes) - len(p.waits) for p in plans)
                progress.done(name, "would change" if n else "no change", f"{n} change(s)" if n else "")
        outcome = run_parallel(targets, lambda h: plan_host(h, steps[h.name]), on_done=on_plan)
    for name, err in outcome.failures.items():
        report.hosts[name].error = err
    for name, plans in outcome.results.items():
        report.hosts[name].plans = plans

    rows = []
    for name, o in report.hosts.items():
        if o.error:
            rows.append([name, "-", "failed", o.error])
            continue
        for p in o.plans:
            if p.no_change:
                rows.append([name, p.operation, "no change", ""])
            for c in p.changes:
                rows.append([name, p.operation, "would wait" if isinstance(c, Wait) else "would change", describe(c)])
    ui.table(f"{title}: plan" + (" (plan mode: nothing will be changed)" if plan_only else ""),
             ["host", "step", "status", "change"], rows, status_column=2)
    if plan_only:
        return report

    to_apply = [hosts[n] for n, o in report.hosts.items() if not o.error and o.changed]
    for n, o in report.hosts.items():
        if not o.error and not o.changed:
            o.applied = [(p.operation, "no change", "") for p in o.plans]
    if to_apply:
        with ui.host_progress([h.name for h in to_apply], "apply") as progress:
            def on_apply(name, done, err):
                progress.done(name, "failed" if err else "changed", err or "")
            applied = run_parallel(to_apply, lambda h: apply_host(h, report.hosts[h.name].plans, progress),
                                   on_done=on_apply)
        for name, err in applied.failures.items():
            report.hosts[name].error = err
        for name, done in applied.results.items():
            report.hosts[name].applied = done

    rows = []
    for name, o in report.hosts.items():
        for step, status, detail in o.applied:
            rows.append([name, step, status, detail])
        if o.error:
            rows.append([name, "-", "failed", o.error])
    ui.table(f"{title}: result", ["host", "step", "result", "detail"], rows, status_column=2)
    return report
