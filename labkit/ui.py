"""Terminal output: one shared rich Console, progress on a TTY, plain lines otherwise.

Without a terminal rich's Progress/Live print only their last frame, so in CI
each host step is logged as one plain line: that line is the lasting record.
Everything is printed from the main thread, grouped per host, never interleaved.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(highlight=False)
_lock = threading.Lock()

STYLE = {"ok": "green", "no change": "green", "changed": "yellow", "would change": "yellow",
         "failed": "bold red", "skipped": "dim"}


def is_tty() -> bool:
    return console.is_terminal


def line(host: str, step: str, status: str, detail: str = "") -> None:
    """One plain record of a host step (``host  step: status - detail``)."""
    style = STYLE.get(status.split(" (")[0], "")
    text = f"{escape(host)}  {escape(step)}: [{style}]{escape(status)}[/{style}]" if style else \
        f"{escape(host)}  {escape(step)}: {escape(status)}"
    if detail:
        text += f" - {escape(detail)}"
    with _lock:
        console.print(text, soft_wrap=True)


def heading(text: str) -> None:
    with _lock:
        console.print(f"[bold]{escape(text)}[/bold]")


def warning(text: str) -> None:
    with _lock:
        console.print(f"[yellow]warning: {escape(text)}[/yellow]", soft_wrap=True)


def error(text: str) -> None:
    with _lock:
        console.print(f"[bold red]{escape(text)}[/bold red]", soft_wrap=True)


class HostProgress:
    """Per-host progress for one phase; ``done(host, status, detail)`` from any thread."""

    def __init__(self, progress: Progress | None, tasks: dict[str, int], phase: str):
        self._progress, self._tasks, self.phase = progress, tasks, phase

    def update(self, host: str, text: str) -> None:
        if self._progress is not None and host in self._tasks:
            self._progress.update(self._tasks[host], description=f"{escape(host)}: {escape(text)}")

    def done(self, host: str, status: str, detail: str = "") -> None:
        if self._progress is not None and host in self._tasks:
            self._progress.update(self._tasks[host], completed=1,
                                  description=f"{escape(host)}: {escape(self.phase)} {escape(status)}")
        else:
            line(host, self.phase, status, detail)


@contextlib.contextmanager
def host_progress(hosts: Iterable[str], phase: str) -> Iterator[HostProgress]:
    hosts = list(hosts)
    if not is_tty():
        yield HostProgress(None, {}, phase)
        return
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    with progress:
        tasks = {h: progress.add_task(f"{escape(h)}: {escape(phase)}", total=1) for h in hosts}
        yield HostProgress(progress, tasks, phase)


class Waiting:
    """A wait's progress: a bar of ready/desired on a terminal, else a plain line every ``every`` seconds."""

    def __init__(self, host: str, what: str, progress: Progress | None, task: int | None, every: float):
        self.host, self.what, self._progress, self._task, self._every = host, what, progress, task, every
        self._last = 0.0

    def update(self, ready: int, desired: int, why: str = "") -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=ready, total=max(desired, 1),
                                  description=f"{escape(self.host)}: {escape(self.what)}"
                                              + (f" [dim]({escape(why)})[/dim]" if why else ""))
        elif time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            line(self.host, "wait", f"{ready}/{desired} ready", f"{self.what}" + (f"; {why}" if why else ""))


@contextlib.contextmanager
def waiting(host: str, what: str, every: float = 10.0) -> Iterator[Waiting]:
    if not is_tty():
        yield Waiting(host, what, None, None, every)
        return
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    with progress:
        yield Waiting(host, what, progress, progress.add_task(f"{escape(host)}: {escape(what)}", total=None), every)


def table(title: str, columns: list[str], rows: list[list[str]], status_column: int | None = None) -> None:
    """A rich table on a terminal; tab-free plain lines (one per row) otherwise."""
    with _lock:
        if not is_tty():
            console.print(f"{escape(title)}:")
            for row in rows:
                console.print("  " + "  ".join(escape(str(c)) for c in row), soft_wrap=True)
            return
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(c, overflow="fold")
        for row in rows:
            cells = [escape(str(c)) for c in row]
            if status_column is not None:
                style = STYLE.get(str(row[status_column]).split(" (")[0])
                if style:
                    cells[status_column] = f"[{style}]{cells[status_column]}[/{style}]"
            t.add_row(*cells)
        console.print(t)
