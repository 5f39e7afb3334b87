"""Restart a container runtime after labkit changed its config, and never leave it down.

When the restart fails, the files labkit just wrote are put back (``PutFile`` kept each one's
previous version as ``.labkit.bak``; a file that did not exist is removed), the runtime is
started again with them, and the command fails with the runtime's own error line from the
journal, so the plan's failure says why and the host runs as it did before.
"""
from __future__ import annotations


from labkit.operations.base import Command
from labkit.shell import quote

BACKUP = ".labkit.bak"
# The runtime's own words in its journal (not systemd's "Failed to start ..." lines about it).
_WHY = ("grep -vE '^(Failed to start|Started|Starting|Stopped|Stopping) |\\.service: ' "
        "| grep -iE 'error|fail|fatal|unable|invalid|refus' | tail -n 1")


def restart_or_roll_back(service: str, written: list[tuple[str, bool]], *, daemon_reload: bool = False) -> Command:
    """``written``: (path, existed before) for every file this apply wrote for ``service``."""
    s = quote(service)
    restore = "; ".join(f"cp -p {quote(path + BACKUP)} {quote(path)}" if existed
                        else f"rm -f {quote(path)}" for path, existed in written)
    reload = "systemctl daemon-reload; " if daemon_reload else ""
    command = (
        f"{reload}systemctl reset-failed {s} 2>/dev/null; "
        f"if systemctl restart {s}; then exit 0; fi; "
        f"why=$(journalctl -u {s} -n 50 --no-pager -o cat 2>/dev/null | {_WHY}); "
        f"{restore + '; ' if restore else ''}{reload}systemctl reset-failed {s} 2>/dev/null; "
        f"systemctl restart {s}; state=$(systemctl is-active {s}); "
        f"echo \"{service} did not start with labkit's change, so the previous files are back "
        f"({service} is $state now): ${{why:-see journalctl -u {service}}}\" >&2; exit 1"
    )
    return Command(command, description=f"restart {service} (config changed; put back if it does not start)")
