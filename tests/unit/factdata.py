"""Shared by the fact tests: parsed facts as plain data, to compare with the recorded expectations."""
from __future__ import annotations

import dataclasses


def plain(value):
    """Dataclasses, tuples and lists of them -> dicts and lists (what the JSON cases hold)."""
    if dataclasses.is_dataclass(value):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
