"""Errors labkit raises. Each says what went wrong and what to do about it."""


class LabkitError(Exception):
    """Base class: tasks.py turns any of these into a clean ``Exit``."""


class InventoryError(LabkitError):
    """hosts.yaml is missing, unreadable or invalid. Raised before any host is touched."""

    def __init__(self, path, problems):
        # problems: list of (field, line or None, message)
        self.path = str(path)
        self.problems = list(problems)
        lines = []
        for field, line, message in self.problems:
            where = f"{self.path}:{line}" if line else self.path
            lines.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        super().__init__("\n".join(lines))


class OperationError(LabkitError):
    """An operation got input it cannot act on (pyinfra's OperationError)."""


class HostError(LabkitError):
    """A step failed on a host; ``host`` names it, ``detail`` is the message without the name."""

    def __init__(self, host, message):
        self.host = host
        self.detail = message
        super().__init__(f"{host}: {message}")


class HostsFailed(LabkitError):
    """One or more hosts failed a step; the others' results are in ``results``."""

    def __init__(self, step, failures, results=None):
        self.step = step
        self.failures = dict(failures)  # host name -> message
        self.results = results or {}
        detail = "; ".join(f"{h}: {m}" for h, m in self.failures.items())
        super().__init__(f"{step} failed on {', '.join(self.failures)} ({detail})")
