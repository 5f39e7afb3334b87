"""Install OS packages, only the missing ones (installing an installed package is a no-op anyway,
but skipping it keeps the plan honest and the run offline-safe)."""
from __future__ import annotations

import shlex
from typing import Iterator

from labkit.errors import OperationError
from labkit.operations.base import Command


def install(family: str, names: list[str], installed: dict[str, bool]) -> Iterator[Command]:
    missing = [n for n in names if not installed.get(n)]
    if not missing:
        return
    pkgs = " ".join(shlex.quote(n) for n in missing)
    if family == "debian":
        yield Command(f"DEBIAN_FRONTEND=noninteractive apt-get install -y {pkgs}",
                      description=f"install {' '.join(missing)}")
    elif family == "rhel":
        yield Command(
            f"if command -v dnf >/dev/null 2>&1; then dnf -y install {pkgs}; else yum -y install {pkgs}; fi",
            description=f"install {' '.join(missing)}",
        )
    else:
        raise OperationError(
            f"cannot install {', '.join(missing)}: unknown OS family (not Debian/Ubuntu or RHEL-like); "
            "install them by hand and run again"
        )


def enable_and_start(unit: str, state: dict, *, restart: bool = False) -> Iterator[Command]:
    """``systemctl enable`` / ``start`` (or ``restart`` when its config changed) as needed."""
    from labkit.facts.services import is_enabled, is_running, unit_name

    u = shlex.quote(unit_name(unit))
    if not is_enabled(state):
        yield Command(f"systemctl enable {u}", description=f"enable {unit}")
    if restart:
        yield Command(f"systemctl restart {u}", description=f"restart {unit} (config changed)")
    elif not is_running(state):
        yield Command(f"systemctl start {u}", description=f"start {unit}")
