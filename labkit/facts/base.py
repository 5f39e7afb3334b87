"""A fact is a shell command plus a parser of its output (pyinfra's shape).

Facts are pure: ``command()`` builds the string (every argument quoted with
``labkit.shell.quote``), ``process()`` turns the recorded output into data. Gathering
them on hosts is ``labkit.remote``'s job; tests feed recorded outputs straight
to ``process()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FactResult:
    stdout: str
    stderr: str = ""
    exited: int = 0


class Fact:
    """Subclasses set ``command`` (or override ``build``) and ``process``.

    ``ok_exit_codes``: exit codes that still mean "the fact was read" (e.g. a
    missing file read with ``cat`` is a fact "absent", not an error).
    ``sudo``: the command needs root on the host.
    """

    command: ClassVar[str] = ""
    ok_exit_codes: ClassVar[tuple[int, ...]] = (0,)
    sudo: ClassVar[bool] = False

    def build(self) -> str:
        return self.command

    def process(self, result: FactResult) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError
