"""``invoke up``: the seed flow (``pipeline.SEED``) applied in one lab session, or planned.

One SSH connection per host for the whole flow (``remote.session``). Applied, it stops at the
first failing step and returns verify's report (the caller judges it). Planned, each step prints
its plan in order and nothing changes; a step whose plan reads what an earlier step still has to
make says what it would do once that step is applied, and planning goes on.
"""
from __future__ import annotations

from dataclasses import dataclass

from labkit import pipeline, remote, ui, waits
from labkit import verify as verify_mod

DEFAULT_TIMEOUT = waits.DEFAULT_TIMEOUT


@dataclass
class UpResult:
    steps: dict[str, str]                 # step -> "applied" | "no change" | "would change" | "after ..." | "skipped"
    verify: verify_mod.Report | None = None  # None in plan mode


def up(inv, *, plan: bool = False, timeout: int = DEFAULT_TIMEOUT) -> UpResult:
    with remote.session(inv):  # one SSH connection per host for every step
        if plan:
            return plan_up(inv)
        done, report = [], None
        for step in pipeline.steps(inv):
            result = step.run(inv, timeout)
            if step.name == "verify":
                report = result
            else:
                done.append(step.name)
    return UpResult({s: "applied" for s in done}, report)


def plan_up(inv) -> UpResult:
    """Each step's plan in ``pipeline.SEED``'s order, changing nothing."""
    statuses: dict[str, str] = {}
    missing: dict[str, str] = {}  # what is not there until a step is applied -> that step
    for step in pipeline.steps(inv):
        blocked = [m for m in step.reads if m in missing]
        if not blocked:
            planned = step.plan(inv)
            statuses[step.name] = planned.status
            missing.update({m: step.name for m in planned.missing})
            continue
        by = list(dict.fromkeys(missing[m] for m in blocked))
        then, changes = step.later(inv) if step.later else ("", True)
        statuses[step.name] = f"after {by[-1]}"
        ui.line(step.host(inv), step.name, f"{'would change' if changes else 'no change'} (after {by[-1]})",
                f"plan depends on {' and '.join(by)} being applied "
                f"({'; '.join(pipeline.NOT_YET[m](inv) for m in blocked)})" + (f"; then {then}" if then else ""))
        missing.update({m: step.name for m in step.makes})
    ui.table("up: plan (plan mode: nothing was changed)", ["step", "plan"], [[k, v] for k, v in statuses.items()],
             status_column=1)
    return UpResult(statuses)
