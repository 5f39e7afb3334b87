"""Install OS packages, only the missing ones (installing an installed package is a no-op anyway,
but skipping it keeps the plan honest and the run offline-safe)."""
from __future__ import annotations

from typing import Iterator

from labkit.errors import OperationError
from labkit.operations.base import Command
from labkit.shell import quote

# Wait this long for another apt/dpkg (unattended-upgrades on a fresh host) instead of failing at
# once. apt >= 1.9.11 honours it; older apt ignores the option. It covers the dpkg lock only:
# `apt-get update`'s lists lock is not waited for (apt 2.6 still fails at once there).
APT_LOCK_TIMEOUT = 300
APT_GET = f"DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}"
APT_INSTALL = f"{APT_GET} install -y"


def _apt_update_reason(missing: list[str], apt: dict | None) -> str:
    if apt is None:
        return ""
    if not apt["lists"]:
        return "no package lists yet"
    unknown = [n for n in missing if n in apt["unknown"]]
    return f"apt knows no {', '.join(unknown)}" if unknown else ""


def install(family: str, names: list[str], installed: dict[str, bool],
            apt: dict | None = None) -> Iterator[Command]:
    """``apt``: the ``AptIndex`` fact; ``apt-get update`` runs first when it has no lists or no
    candidate for a missing package (else install would say "Unable to locate package")."""
    missing = [n for n in names if not installed.get(n)]
    if not missing:
        return
    pkgs = " ".join(quote(n) for n in missing)
    if family == "debian":
        reason = _apt_update_reason(missing, apt)
        if reason:
            yield Command(f"{APT_GET} update", description=f"apt-get update ({reason})")
        yield Command(f"{APT_INSTALL} {pkgs}", description=f"install {' '.join(missing)}")
    elif family == "rhel":
        # dnf 4 and yum wait for a held lock and fetch missing metadata by themselves.
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

    u = quote(unit_name(unit))
    if not is_enabled(state):
        yield Command(f"systemctl enable {u}", description=f"enable {unit}")
    if restart:
        yield Command(f"systemctl restart {u}", description=f"restart {unit} (config changed)")
    elif not is_running(state):
        yield Command(f"systemctl start {u}", description=f"start {unit}")
